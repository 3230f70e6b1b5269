"""CUDA graphs for the stage forwards: captured once per input shape, then replayed with one launch.

In a Triton python-backend stub the interpreter is an embedded libpython, slower than a stand-alone `python3`, and
the text encoders' many small kernels left their pace to the CPU (on an H200, T5 30.7 ms served eager, 13.4 ms
replayed; BENCHMARKS.md). A replayed graph costs the CPU almost nothing and runs the same kernels.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from flux_async.contract import ENV_CUDA_GRAPHS

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE  # what graph_pool_handle() returns

log = logging.getLogger(__name__)


def graphs_wanted(device: torch.device) -> bool:
    """Graphs on a CUDA device unless FLUX_ASYNC_CUDA_GRAPHS=0 (replays equal eager runs bitwise: test_cuda_graphs.py,
    run on an H100)."""
    return device.type == "cuda" and os.environ.get(ENV_CUDA_GRAPHS, "1").lower() not in ("0", "false", "no")


class GraphCache:
    """Calls `fn(*tensors) -> tensor` through a CUDA graph per distinct (shape, dtype) of its inputs.

    Eager when disabled (CPU, or FLUX_ASYNC_CUDA_GRAPHS=0) and, from then on, when a capture fails (`failure` says
    why). At most `max_graphs` are kept, least recently used dropped; they share one memory pool.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], device: torch.device, enabled: bool | None = None,
                 max_graphs: int = 16):
        self.fn, self.device, self.max_graphs = fn, torch.device(device), max_graphs
        self.enabled = graphs_wanted(self.device) if enabled is None else enabled
        self.failure: str | None = None
        self.graphs: OrderedDict[tuple, tuple] = OrderedDict()
        self._pool: _POOL_HANDLE | None = None

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.fn(*tensors)
        key = tuple((tuple(t.shape), t.dtype) for t in tensors)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(key, tensors)
            except Exception as exc:  # an op that cannot be captured: stay correct, run eagerly from now on
                self.enabled, self.failure = False, f"{type(exc).__name__}: {exc}"
                log.warning("CUDA graph capture failed, running eagerly: %s", self.failure)
                torch.cuda.synchronize(self.device)
                return self.fn(*tensors)
        self.graphs.move_to_end(key)
        graph, static_inputs, static_output = entry
        for static, tensor in zip(static_inputs, tensors):
            static.copy_(tensor)
        graph.replay()
        return static_output.clone()  # the graph overwrites its output on the next replay

    def _capture(self, key: tuple, tensors: tuple) -> tuple:
        static_inputs = [t.to(self.device).clone() for t in tensors]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the default stream: lazy initialisation, library workspaces
            self.fn(*static_inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            static_output = self.fn(*static_inputs)
        self.graphs[key] = (graph, static_inputs, static_output)
        while len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        return self.graphs[key]
