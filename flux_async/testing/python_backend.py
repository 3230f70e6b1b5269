"""A stand-in for Triton's `triton_python_backend_utils`, so each `model.py` runs directly in one process.

The pure-Python half of the module is the real file from the nvidia-pytriton wheel (ModelConfig, the helpers);
the half the stub provides in C++ (Tensor, InferenceRequest/Response, TritonError, ...) is re-created here with the
same method names. BLS requests go to models registered with `serve_in_process`; there is no dynamic batcher:
each request is executed as it comes (tests that need cross-request batching use the real server).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import inspect
import sys
import types
from pathlib import Path
from typing import Any, Protocol

import numpy as np

MODULE_NAME = "triton_python_backend_utils"


class TritonError(Exception):
    """Same codes and accessors as the stub's TritonError."""

    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    """A named tensor held as a numpy array or, when built from DLPack, as a torch tensor."""

    def __init__(self, name: str, value):
        self._name, self._value = name, value

    @classmethod
    def from_dlpack(cls, name: str, value):
        import torch

        return cls(name, torch.from_dlpack(value))

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return isinstance(self._value, np.ndarray) or self._value.device.type == "cpu"

    def as_numpy(self) -> np.ndarray:
        if isinstance(self._value, np.ndarray):
            return self._value
        return self._value.detach().cpu().numpy()  # raises for bfloat16, like the real stub

    def to_dlpack(self):
        import torch

        if isinstance(self._value, np.ndarray):
            return torch.from_numpy(self._value).__dlpack__()
        return self._value.__dlpack__()


class InferenceResponse:
    def __init__(self, output_tensors=None, error: TritonError | None = None):
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self):
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error


class ResponseSender:
    """Collects what a decoupled model sends: a list of (response, flags)."""

    def __init__(self):
        self.sent: list[tuple[InferenceResponse, int]] = []

    def send(self, response=None, flags: int = 0):
        self.sent.append((response, flags))


class PreferredMemory:
    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0):
        self.preferred_memory_type, self.preferred_device_id = preferred_memory_type, preferred_device_id


class _Model(Protocol):
    """An initialized TritonPythonModel: `execute` returns its responses, or an awaitable of them."""

    def execute(self, requests: list[InferenceRequest]) -> Any: ...


_MODELS: dict[str, _Model] = {}


class InferenceRequest:
    """A request: built by a test for `execute`, or by a BLS model for another in-process model."""

    def __init__(self, model_name: str = "", inputs=None, requested_output_names=None, preferred_memory=None,
                 **_ignored):
        self.model_name, self._inputs = model_name, list(inputs or [])
        self._requested_output_names = list(requested_output_names or [])
        self._sender = ResponseSender()

    def requested_output_names(self) -> list[str]:
        return self._requested_output_names

    def inputs(self):
        return self._inputs

    def get_response_sender(self) -> ResponseSender:
        return self._sender

    def request_id(self) -> str:
        return ""

    def is_cancelled(self) -> bool:
        return False

    async def async_exec(self, decoupled: bool = False):
        model = _MODELS.get(self.model_name)
        if model is None:
            return InferenceResponse(error=TritonError(f"Request for unknown model: '{self.model_name}' is not found",
                                                       TritonError.NOT_FOUND))
        result = model.execute([self])
        if inspect.isawaitable(result):
            result = await result
        return result[0]

    def exec(self, decoupled: bool = False):
        return asyncio.run(self.async_exec(decoupled))


class Logger:
    @staticmethod
    def log_info(message):
        print(message, file=sys.stderr)

    log_warn = log_error = log_verbose = log_info


class MetricFamily:
    """The stub's custom-metrics family; each metric's labels and value are kept in `MetricFamily.values`."""

    COUNTER, GAUGE, HISTOGRAM = range(3)
    values: dict[tuple[str, tuple], float] = {}  # (family name, sorted labels) -> value

    def __init__(self, name: str, description: str, kind: int):
        self.name, self.description, self.kind = name, description, kind

    def Metric(self, labels: dict | None = None) -> _Metric:  # noqa: N802  (the stub's name)
        return _Metric(self.name, tuple(sorted((labels or {}).items())))


class _Metric:
    def __init__(self, family: str, labels: tuple):
        self.key = (family, labels)
        MetricFamily.values[self.key] = 0.0

    def set(self, value: float) -> None:
        MetricFamily.values[self.key] = float(value)

    def increment(self, value: float) -> None:
        MetricFamily.values[self.key] += float(value)

    def value(self) -> float:
        return MetricFamily.values[self.key]


def _real_utils_path() -> Path:
    dist = importlib.metadata.distribution("nvidia-pytriton")
    # a PathDistribution locates its files as pathlib paths; str() only satisfies the SimplePath protocol
    return Path(str(dist.locate_file("pytriton/tritonserver/backends/python/triton_python_backend_utils.py")))


def install() -> types.ModuleType:
    """Put the stand-in into `sys.modules` as `triton_python_backend_utils` (idempotent) and return it."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    spec = importlib.util.spec_from_file_location(MODULE_NAME, _real_utils_path())
    assert spec is not None and spec.loader is not None  # a .py file always has a source loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for obj in (TritonError, Tensor, InferenceResponse, InferenceRequest, PreferredMemory, Logger, MetricFamily):
        setattr(module, obj.__name__, obj)
    extras = {"TRITONSERVER_MEMORY_CPU": 0, "TRITONSERVER_MEMORY_GPU": 2, "serve_in_process": serve_in_process,
              "unserve_in_process": unserve_in_process}
    for name, value in extras.items():  # attributes the C++ stub would define: the module is built at run time
        setattr(module, name, value)
    sys.modules[MODULE_NAME] = module
    return module


def serve_in_process(name: str, model) -> None:
    """Make BLS requests for `name` go to `model` (an initialized TritonPythonModel)."""
    _MODELS[name] = model


def unserve_in_process(name: str) -> None:
    _MODELS.pop(name, None)


def load_model_py(path: str | Path, name: str):
    """Import a model.py file (its folder is named '1', so not importable by name) and return its module."""
    install()
    spec = importlib.util.spec_from_file_location(f"triton_model_{name}", Path(path))
    assert spec is not None and spec.loader is not None, f"{path} is not a Python file"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
