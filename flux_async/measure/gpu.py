"""GPU sampling with pynvml (NVML): memory used and utilization per GPU, or a clear reason why there is none."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


class GpuSampler:
    """Reads every visible GPU; `available` is False (and `reason` says why) on a machine without one."""

    def __init__(self):
        self.available, self.reason, self._handles = False, "", []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            self.available = count > 0
            self.reason = "" if count else "NVML found no GPU"
        except Exception as exc:  # no driver, no library: a CPU machine
            self.reason = f"no GPU: {type(exc).__name__}: {exc}".strip()

    def sample(self) -> list[dict]:
        """[{index, name, memory_used_bytes, memory_total_bytes, utilization_pct}] for each GPU ([] without)."""
        readings = []
        for index, handle in enumerate(self._handles):
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            name = self._nvml.nvmlDeviceGetName(handle)
            readings.append({"index": index, "name": name.decode() if isinstance(name, bytes) else name,
                             "memory_used_bytes": int(memory.used), "memory_total_bytes": int(memory.total),
                             "utilization_pct": int(utilization.gpu)})
        return readings

    async def __call__(self) -> list[dict]:
        return self.sample()


def visible_gpu_count(visible: str | None = None) -> int:
    """How many GPUs a CUDA process would see given its CUDA_VISIBLE_DEVICES (default: this process's; unset: every
    GPU NVML finds, 0 without NVML)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")])
    return len(GpuSampler().sample())


def peak_memory_during(run: Callable[[], object], sampler: GpuSampler | None = None, period_s: float = 0.005) -> int:
    """The highest whole-device memory use (bytes, summed over the GPUs) seen while `run()` runs."""
    sampler = sampler or GpuSampler()
    used = lambda: sum(g["memory_used_bytes"] for g in sampler.sample())  # noqa: E731
    peak, done = [used()], threading.Event()

    def watch():
        while not done.is_set():
            peak.append(used())
            time.sleep(period_s)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run()
    finally:
        done.set()
        watcher.join()
    return max(peak)
