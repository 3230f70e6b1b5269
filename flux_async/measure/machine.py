"""What machine produced a report: host, OS, Python, CPUs, memory and GPUs (for the report's `machine` key)."""

from __future__ import annotations

import os
import platform
import socket


def describe_machine() -> dict:
    """Host name, OS, Python, logical CPUs, memory in GiB and the GPUs pynvml sees (names; [] without)."""
    from flux_async.measure.gpu import GpuSampler

    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    sampler = GpuSampler()
    return {"hostname": socket.gethostname(), "os": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "memory_gib": memory_gib,
            "gpus": [gpu["name"] for gpu in sampler.sample()] if sampler.available else []}
