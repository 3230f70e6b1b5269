"""The target interface, written once: what every kind of target provides, and the vocabulary it speaks.

A target is opened, sent jobs (`await target.send(job) -> Outcome`), asked whether the server is live and for
Triton's statistics, and closed. Times are `time.perf_counter_ns()`; a target measures `sent_ns` itself, right
before the request leaves, so time spent waiting before the send shows in the corrected latency, not the service time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flux_async.errors import Unavailable
from flux_async.scenario.workload import Job

if TYPE_CHECKING:
    import numpy as np


class TargetUnreachable(Unavailable):
    """The target cannot be reached, or its model is not ready (exit code 3)."""


@dataclass
class Outcome:
    """What became of one request."""

    sent_ns: int
    done_ns: int
    ok: bool
    images: int = 0
    first_ns: int | None = None  # first response (streams)
    error_kind: str | None = None
    error: str | None = None
    pixels: np.ndarray | None = None  # the images [N, 3, H, W] (numpy), kept when the job is to be verified
    seeds: tuple[int, ...] | None = None  # the seeds the server used, when kept
    server_timing: dict[str, float] | None = None  # the response's Server-Timing durations in ms, by name


@dataclass(frozen=True)
class Endpoint:
    """A parsed URL: host:port, whether TLS is on, and the transport ('grpc', 'http' or 'fake')."""

    SCHEME = {"grpc": "grpc", "grpc-stream": "grpc", "http": "http", "openai-images": "http", "nim": "http",
              "fake": "fake"}  # protocol → URL scheme

    address: str
    transport: str
    tls: bool
    query: str = ""

    def url(self, protocol: str) -> str:
        scheme = self.SCHEME[protocol]
        return f"{scheme}{'s' if self.tls else ''}://{self.address}{'?' + self.query if self.query else ''}"


def describe(protocol: str, url: str, model: str) -> str:
    """How a target is named in the console: 'grpc grpc://host:8001 · bls' (no model: 'nim http://host:8003')."""
    return f"{protocol} {url} · {model}" if model else f"{protocol} {url}"


@runtime_checkable
class Target(Protocol):
    """One server (or several, balanced) that takes jobs. Implementations may subclass it for `description`."""

    protocol: str  # 'grpc', 'grpc-stream', 'http', 'openai-images' or 'nim': the report's protocol, histograms' key
    url: str  # the URL(s) as reported, several joined by ','
    model: str  # the model the requests go to ('' for openai-images / nim without a model)
    returns_images: bool  # False: the target makes no images (nothing to verify)
    unverifiable: str | None  # why its images cannot be checked against single runs (None: they can)

    async def open(self) -> None:
        """Connect; raise `TargetUnreachable` unless the server is live and the model ready."""
        ...

    async def send(self, job: Job) -> Outcome:
        """Send one request; every failure is an `Outcome` with `ok=False`, never an exception."""
        ...

    async def live(self) -> bool:
        """Whether the server answers its liveness check (bounded, never raises)."""
        ...

    async def statistics(self) -> dict[str, dict] | None:
        """Triton's statistics extension for every model (see attribution.py), or None without a server."""
        ...

    async def close(self) -> None:
        """Release the connections (safe after a failed `open`)."""
        ...

    @property
    def description(self) -> str:
        """The console's name for this target."""
        return describe(self.protocol, self.url, self.model)


# ---- shared by the implementations -----------------------------------------------------------------------------

def error_kind(exc: BaseException) -> str:
    """A short, stable name for an error: the gRPC status, 'HTTP <code>', 'timeout', or the exception class."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    code = getattr(exc, "code", None)  # grpc.aio.AioRpcError
    if callable(code):
        name = code().name
        return "timeout" if name == "DEADLINE_EXCEEDED" else name
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    if status:
        return str(status).replace("StatusCode.", "")
    return type(exc).__name__


def succeeded(sent: int, count: int, pixels=None, seeds=None, first: int | None = None) -> Outcome:
    """The outcome of a successful response (images and seeds only when they are to be verified)."""
    return Outcome(sent, time.perf_counter_ns(), True, images=count, first_ns=first, pixels=pixels, seeds=seeds)


async def check_contract(target, read_info: Callable[[], Awaitable]) -> None:
    """Raise `ContractMismatch` (closing the target) unless its contract fits the model `read_info()` describes.
    When the metadata cannot be read, a scenario's own contract is an error; `bls`'s default is taken on trust."""
    from flux_async.errors import ContractMismatch
    from flux_async.scenario.model_contract import check_contract as problems_of

    try:
        info = await asyncio.wait_for(read_info(), target.config.connect_timeout_s)
    except Exception as exc:
        if target.config.contract is None:
            return
        await target.close()
        raise TargetUnreachable(f"{target.url}: cannot read model {target.model!r}'s metadata to check "
                                f"target.contract: {type(exc).__name__}: {exc}") from None
    problems = problems_of(target.contract, info, target.protocol)
    if problems:
        await target.close()
        raise ContractMismatch(target.model, problems)


async def check_ready(target, probe: Callable[[], Awaitable[tuple[bool, bool]]]) -> None:
    """Raise `TargetUnreachable` unless `probe` says (live, ready) within the connect timeout; close on failure."""
    try:
        live, ready = await asyncio.wait_for(probe(), target.config.connect_timeout_s)
    except Exception as exc:
        await target.close()
        raise TargetUnreachable(f"{target.url} is unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    if not live or not ready:
        await target.close()
        what = "is not live" if not live else f"has no ready model '{target.model}'" if target.model else "is not ready"
        seen = getattr(target, "readiness", "")  # what an HTTP JSON target's probe saw
        raise TargetUnreachable(f"{target.url} {what}" + (f" ({seen})" if seen else ""))
