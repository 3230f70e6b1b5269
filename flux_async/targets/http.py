"""The HTTP target: aiohttp against Triton's KServe v2 endpoint, with the binary tensor extension."""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

from flux_async.http_session import client_session
from flux_async.measure import attribution
from flux_async.scenario.config import TargetConfig
from flux_async.scenario.workload import Job
from flux_async.targets import wire
from flux_async.targets.base import Endpoint, Outcome, Target, check_contract, check_ready, error_kind, succeeded
from flux_async.targets.model_info import http_model_info
from flux_async.targets.wire import EncodedRequests

if TYPE_CHECKING:
    import aiohttp


def open_session(endpoint: Endpoint, config: TargetConfig) -> aiohttp.ClientSession:
    """The aiohttp session of an HTTP target: TLS as the scenario says, no connection limit, its timeouts."""
    import aiohttp

    context = None
    if endpoint.tls:
        tls = config.tls
        context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
        if tls and tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    connector = aiohttp.TCPConnector(limit=0, ssl=context if context is not None else False)
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s, connect=config.connect_timeout_s)
    return client_session(config.compression, config.headers, connector=connector, timeout=timeout)


class HttpTarget(Target):
    """aiohttp POST to /v2/models/<model>/infer with the binary tensor extension (tensors never travel as JSON);
    any model, through the scenario's contract."""

    protocol = "http"
    returns_images = True

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        self.endpoint, self.config, self.model = endpoint, config, config.model_name
        self.url = endpoint.url(self.protocol)
        self.base = f"{'https' if endpoint.tls else 'http'}://{endpoint.address}"
        self._infer_url = f"{self.base}/v2/models/{self.model}/infer"
        self.session: aiohttp.ClientSession | None = None
        self.contract = config.model_contract
        self.unverifiable = self.contract.unverifiable
        self.requests = EncodedRequests(lambda job: wire.http_request(job, self.contract))

    async def open(self) -> None:
        import tritonclient.http  # noqa: F401  (the body encoder: imported now, not during the first request)

        self.session = open_session(self.endpoint, self.config)
        await check_ready(self, self._ready)
        await check_contract(self, lambda: http_model_info(self.session, self.base, self.model))

    async def _ready(self) -> tuple[bool, bool]:
        assert self.session is not None, "open() first"
        async with self.session.get(f"{self.base}/v2/health/live") as live:
            if live.status != 200:
                return False, False
        async with self.session.get(f"{self.base}/v2/models/{self.model}/ready") as ready:
            return True, ready.status == 200

    async def live(self) -> bool:
        import aiohttp

        try:
            assert self.session is not None, "open() first"
            # a number as timeout is what aiohttp turns into ClientTimeout(total=number) itself
            timeout = aiohttp.ClientTimeout(total=min(self.config.connect_timeout_s, 5))
            async with self.session.get(f"{self.base}/v2/health/live", timeout=timeout) as response:
                return response.status == 200
        except Exception:
            return False

    async def statistics(self) -> dict[str, dict]:
        assert self.session is not None, "open() first"
        async with self.session.get(f"{self.base}/v2/models/stats") as response:
            response.raise_for_status()
            return attribution.normalize(await response.json())

    async def send(self, job: Job) -> Outcome:
        body, headers = self.requests.get(job)
        sent = time.perf_counter_ns()
        try:
            assert self.session is not None, "open() first"
            async with self.session.post(self._infer_url, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status != 200:
                    return Outcome(sent, time.perf_counter_ns(), False, error_kind=f"HTTP {response.status}",
                                   error=payload[:500].decode("utf-8", "replace"))
                length = response.headers.get("Inference-Header-Content-Length")
        except Exception as exc:
            return Outcome(sent, time.perf_counter_ns(), False, error_kind=error_kind(exc), error=str(exc))
        try:
            parts = wire.http_images(payload, int(length) if length else None, job.verify, self.contract)
        except Exception as exc:  # a response we cannot read is the server's error, not the tester's crash
            return Outcome(sent, time.perf_counter_ns(), False, error_kind="bad_response",
                           error=wire.unreadable(exc))
        return succeeded(sent, *parts)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
