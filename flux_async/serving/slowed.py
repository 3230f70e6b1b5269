"""A model class made slower by a fixed delay per `execute` (fault injection: "make one stage slow")."""

from __future__ import annotations

import asyncio
import inspect
import time


def slowed(cls: type, delay_s: float) -> type:
    """A subclass of the Triton model class `cls` whose every execution first waits `delay_s` seconds."""
    if inspect.iscoroutinefunction(cls.execute):
        async def execute(self, requests):
            await asyncio.sleep(delay_s)
            return await cls.execute(self, requests)
    else:
        def execute(self, requests):
            time.sleep(delay_s)
            return cls.execute(self, requests)
    return type(f"Slowed{cls.__name__}", (cls,), {"execute": execute, "fault_delay_s": delay_s})
