"""A model class made slower by a fixed delay per `execute` (fault injection: "make one stage slow")."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, Protocol


class _TritonModel(Protocol):
    """A TritonPythonModel class: `execute` takes a list of requests and returns (or awaits) the responses."""

    def execute(self, requests: Any) -> Any: ...


def slowed(cls: type[_TritonModel], delay_s: float) -> type:
    """A subclass of the Triton model class `cls` whose every execution first waits `delay_s` seconds."""
    execute: Callable[[Any, Any], Any]  # a coroutine function or a plain one, as `cls.execute` is
    if inspect.iscoroutinefunction(cls.execute):
        async def execute(self, requests):
            await asyncio.sleep(delay_s)
            return await cls.execute(self, requests)
    else:
        def execute(self, requests):
            time.sleep(delay_s)
            return cls.execute(self, requests)
    return type(f"Slowed{cls.__name__}", (cls,), {"execute": execute, "fault_delay_s": delay_s})
