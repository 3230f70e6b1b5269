"""Fault injection during a run (only with `--allow-faults`: these actions change the server).

    faults:
      - {action: unload, model: t5_encoder, at: 10s, duration: 8s}    # model-control unload, then load again
      - {action: slow, model: vae_decoder, at: 5s, duration: 10s, delay: 300ms}   # the stage sleeps per execution
      - {action: kill-server, at: 20s, duration: 2s}                   # embedded server only: SIGKILL, then restart

Each fault is applied at `at` (seconds from the start of the run), reverted `duration` later, and always reverted
when the run ends early. The report gives, per fault, the requests that ended in its window with their errors by
kind, and the recovery time: from the start of the revert to the first request that succeeds afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from flux_async.http_session import client_session
from flux_async.scenario.faults import MODEL_CLASSES, FaultConfig


def slow_model_source(model: str, delay_s: float) -> bytes:
    """A model.py that runs `model`'s own class `delay_s` slower per execution."""
    module, cls = MODEL_CLASSES[model]
    return (f'"""{model}, slowed by {delay_s:g} s per execution (flux_async fault injection)."""\n\n'
            f"from flux_async.serving.{module} import {cls}\nfrom flux_async.serving.slowed import slowed\n\n"
            f"TritonPythonModel = slowed({cls}, {delay_s!r})\n").encode()


class ServerControl:
    """Triton's model-control API over HTTP, and the embedded server (if any) for kill and restart."""

    def __init__(self, http_url: str, server=None):
        self.base = http_url if http_url.startswith("http") else f"http://{http_url}"
        self.server = server

    async def _post(self, path: str, body: dict | None = None) -> None:
        import aiohttp

        async with client_session(timeout=aiohttp.ClientTimeout(total=600)) as session:
            async with session.post(f"{self.base}{path}", json=body or {}) as response:
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}: {(await response.text())[:300]}")

    async def _config(self, model: str) -> dict:
        import aiohttp

        async with client_session(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(f"{self.base}/v2/models/{model}/config") as response:
                response.raise_for_status()
                return await response.json()

    async def unload(self, model: str) -> None:
        await self._post(f"/v2/repository/models/{model}/unload")

    async def load(self, model: str, config: dict | None = None, files: dict[str, bytes] | None = None) -> None:
        parameters = {}
        if config is not None:
            parameters["config"] = json.dumps(config)
        for path, content in (files or {}).items():
            parameters[path] = base64.b64encode(content).decode()
        await self._post(f"/v2/repository/models/{model}/load", {"parameters": parameters} if parameters else None)

    async def slow(self, model: str, delay_s: float) -> None:
        config = await self._config(model)
        config.setdefault("parameters", {})["flux_async_fault"] = {"string_value": f"slow {delay_s:g}s"}
        await self.load(model, config, {"file:1/model.py": slow_model_source(model, delay_s)})

    async def kill(self) -> None:
        await asyncio.to_thread(self.server.kill)

    async def restart(self) -> None:
        await asyncio.to_thread(self.server.restart)


@dataclass
class FaultRecord:
    config: FaultConfig
    applied_s: float | None = None
    reverted_s: float | None = None  # when the revert started
    revert_took_s: float | None = None
    error: str | None = None


@dataclass
class FaultInjector:
    """Applies the faults on schedule and watches every request's end, to report each fault's window."""

    faults: list[FaultConfig]
    control: ServerControl
    records: list[FaultRecord] = field(default_factory=list)
    _outcomes: list[tuple[float, bool, str | None]] = field(default_factory=list)
    _start: float = 0.0

    def observe(self, phase: str, job, outcome) -> None:
        """Engine observer: remember when each request ended and how."""
        self._outcomes.append((time.perf_counter() - self._start, outcome.ok, outcome.error_kind))

    async def _apply(self, fault: FaultConfig) -> None:
        if fault.action == "unload":
            assert fault.model is not None  # the scenario reader requires a model for unload and slow
            await self.control.unload(fault.model)
        elif fault.action == "slow":
            assert fault.model is not None
            await self.control.slow(fault.model, fault.delay_s)
        else:
            await self.control.kill()

    async def _revert(self, fault: FaultConfig) -> None:
        if fault.action in ("unload", "slow"):
            assert fault.model is not None  # the scenario reader requires a model for these actions
            await self.control.load(fault.model)  # from the repository: the real model again
        else:
            await self.control.restart()

    async def _one(self, record: FaultRecord) -> None:
        fault = record.config
        try:
            # uvloop rounds timers to the nearest millisecond: add one so a fault never fires early
            await asyncio.sleep(max(0.0, fault.at_s - (time.perf_counter() - self._start)) + 0.001)
            record.applied_s = time.perf_counter() - self._start
            await self._apply(fault)
            await asyncio.sleep(fault.duration_s)
        except asyncio.CancelledError:
            pass  # the run ended: revert below, whatever happened
        except Exception as exc:
            record.error = f"applying {fault.action}: {type(exc).__name__}: {exc}"
        if record.applied_s is None:
            return
        record.reverted_s = time.perf_counter() - self._start
        try:
            await self._revert(fault)
        except Exception as exc:
            record.error = (record.error + "; " if record.error else "") + f"reverting: {type(exc).__name__}: {exc}"
        record.revert_took_s = time.perf_counter() - self._start - record.reverted_s

    async def run(self, stop: asyncio.Event) -> None:
        """Apply every fault on time until `stop` is set; then revert what is still applied."""
        self._start = time.perf_counter()
        self.records = [FaultRecord(f) for f in self.faults]
        tasks = [asyncio.create_task(self._one(r)) for r in self.records]
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait(tasks + [waiter], return_when=asyncio.FIRST_COMPLETED)
        while not all(t.done() for t in tasks) and not stop.is_set():
            await asyncio.wait(tasks + [waiter], return_when=asyncio.FIRST_COMPLETED)
        for task, record in zip(tasks, self.records):
            if record.reverted_s is None:
                task.cancel()  # a fault still waiting or applied: revert now
        await asyncio.gather(*tasks, return_exceptions=True)  # a revert under way is waited for, not cut off
        waiter.cancel()

    def summary(self) -> list[dict]:
        """Per fault: its window, the requests that ended in it (errors by kind), the revert and the recovery."""
        result = []
        for record in self.records:
            fault = record.config
            entry: dict[str, Any] = {"action": fault.action, "model": fault.model, "at_s": fault.at_s,
                                     "duration_s": fault.duration_s, "applied_s": record.applied_s,
                                     "reverted_s": record.reverted_s, "revert_took_s": record.revert_took_s,
                                     "error": record.error}
            if fault.action == "slow":
                entry["delay_s"] = fault.delay_s
            if record.applied_s is not None and record.reverted_s is not None:
                window = [(ok, kind) for t, ok, kind in self._outcomes if record.applied_s <= t < record.reverted_s]
                errors: dict[str, int] = {}
                for ok, kind in window:
                    if not ok:
                        errors[kind or "error"] = errors.get(kind or "error", 0) + 1
                after = [t for t, ok, _ in self._outcomes if ok and t >= record.reverted_s]
                entry.update({"requests_in_window": len(window), "errors_in_window": sum(errors.values()),
                              "errors_by_kind_in_window": errors,
                              "recovery_s": round(min(after) - record.reverted_s, 3) if after else None})
            result.append(entry)
        return result
