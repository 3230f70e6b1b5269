"""Targets: one small interface, `await target.send(job) -> Outcome`, over Triton's endpoints.

    Target
     ├── GrpcTarget        tritonclient.grpc.aio unary `infer` (to `bls`)
     ├── GrpcStreamTarget  tritonclient.grpc.aio bidirectional `stream_infer` (to the decoupled `bls_stream`)
     ├── HttpTarget        aiohttp against the KServe v2 HTTP endpoint, binary tensor extension
     ├── FakeTarget        no server: a configurable latency (and stall), for tests and tester-overhead benchmarks
     └── BalancedTarget    several targets of one protocol: round-robin or least in flight

Times are `time.perf_counter_ns()`. A target measures `sent_ns` itself, right before the request leaves, so time a
request spends waiting before it is sent shows in the corrected latency and not in the service time.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from flux_async.errors import Unavailable
from flux_async.measure import attribution
from flux_async.targets import wire
from flux_async.http_session import client_session
from flux_async.scenario.config import TargetConfig, parse_duration
from flux_async.targets.wire import EncodedRequests
from flux_async.scenario.workload import Job

SCHEMES = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True),
           "fake": ("fake", False)}


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
    pixels: object = None  # the images [N, 3, H, W] (numpy), kept when the job is to be verified
    seeds: tuple[int, ...] | None = None  # the seeds the server used, when kept


@dataclass(frozen=True)
class Endpoint:
    """A parsed URL: host:port, whether TLS is on, and the transport ('grpc', 'http' or 'fake')."""

    address: str
    transport: str
    tls: bool
    query: str = ""

    def url(self, protocol: str) -> str:
        scheme = {"grpc": "grpc", "grpc-stream": "grpc", "http": "http", "fake": "fake"}[protocol]
        return f"{scheme}{'s' if self.tls else ''}://{self.address}{'?' + self.query if self.query else ''}"


def parse_url(url: str, protocol: str) -> Endpoint:
    """`host:port` (transport from the protocol) or `grpc://`, `grpcs://`, `http://`, `https://`, `fake://` URLs."""
    if "://" not in url:
        host_port = url
        if not host_port or ":" not in host_port:
            raise ValueError(f"URL {url!r} must be host:port or scheme://host:port")
        return Endpoint(host_port, "http" if protocol == "http" else "grpc", False)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"URL {url!r}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    transport, tls = SCHEMES[parts.scheme]
    if transport == "fake":
        return Endpoint(parts.netloc or "fake", "fake", False, parts.query)
    if not parts.port:
        raise ValueError(f"URL {url!r} needs a port")
    expected = "http" if protocol == "http" else "grpc"
    if transport != expected:
        raise ValueError(f"URL {url!r} is {parts.scheme}:// but the protocol is {protocol}")
    return Endpoint(parts.netloc, transport, tls)


def _error_kind(exc: BaseException) -> str:
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


class GrpcTarget:
    """Unary gRPC `ModelInfer` to `bls`: tritonclient.grpc.aio for readiness and statistics; the requests go over
    a grpc.aio channel of our own as pre-serialized bytes (see wire.py)."""

    protocol = "grpc"
    _method = "/inference.GRPCInferenceService/ModelInfer"

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        self.endpoint, self.config, self.model = endpoint, config, config.model_name
        self.url = endpoint.url(self.protocol)
        self.client = self.channel = None
        self.metadata = tuple((k.lower(), v) for k, v in config.headers.items()) or None
        self.requests = EncodedRequests(lambda job: wire.grpc_request(self.model, job))

    def _channel_options(self) -> list:
        from tritonclient.grpc import KeepAliveOptions

        keepalive = KeepAliveOptions()
        return [  # tritonclient's own defaults, plus a short reconnect backoff: a restarted server is used at once
            ("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)]

    def _credentials(self):
        import grpc

        tls = self.config.tls

        def read(path):
            return open(path, "rb").read() if path else None

        return grpc.ssl_channel_credentials(read(tls and tls.ca_file), read(tls and tls.key_file),
                                            read(tls and tls.cert_file))

    async def open(self) -> None:
        import grpc
        import tritonclient.grpc.aio as grpc_aio
        from tritonclient.grpc import service_pb2

        tls = self.config.tls
        options = self._channel_options()
        compression = {"none": None, "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[
            self.config.compression]
        self.client = grpc_aio.InferenceServerClient(
            self.endpoint.address, ssl=self.endpoint.tls, root_certificates=tls.ca_file if tls else None,
            private_key=tls.key_file if tls else None, certificate_chain=tls.cert_file if tls else None,
            channel_args=options)
        self.channel = (grpc.aio.secure_channel(self.endpoint.address, self._credentials(), options=options,
                                                compression=compression)
                        if self.endpoint.tls else grpc.aio.insecure_channel(self.endpoint.address, options=options,
                                                                             compression=compression))
        self._infer = self.channel.unary_unary(self._method, request_serializer=None, response_deserializer=None)
        self._stream = self.channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                                  request_serializer=None,
                                                  response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
        await _check_ready(self, self._ready)

    async def _ready(self) -> tuple[bool, bool]:
        headers = self.config.headers or None
        live = await self.client.is_server_live(headers=headers)
        return live, await self.client.is_model_ready(self.model, headers=headers)

    async def live(self) -> bool:
        """Whether the server answers its liveness check (bounded by the connect timeout)."""
        try:
            return await asyncio.wait_for(self.client.is_server_live(headers=self.config.headers or None),
                                          min(self.config.connect_timeout_s, 5))
        except Exception:
            return False

    async def statistics(self) -> dict[str, dict]:
        """Triton's statistics extension for every model (see attribution.py)."""
        payload = await self.client.get_inference_statistics(headers=self.config.headers or None, as_json=True)
        return attribution.normalize(payload)

    async def send(self, job: Job) -> Outcome:
        request = self.requests.get(job)
        sent = time.perf_counter_ns()
        try:
            response = await self._infer(request, timeout=self.config.request_timeout_s, metadata=self.metadata)
        except Exception as exc:  # every failure is a result, classified by kind
            return Outcome(sent, time.perf_counter_ns(), False, error_kind=_error_kind(exc), error=_message(exc))
        try:
            parts = wire.grpc_images(response, job.verify)
        except Exception as exc:  # a response we cannot read is the server's error, not the tester's crash
            return Outcome(sent, time.perf_counter_ns(), False, error_kind="bad_response",
                           error=f"{type(exc).__name__}: {exc}")
        return _success(sent, *parts)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.client is not None:
            await self.client.close()


class GrpcStreamTarget(GrpcTarget):
    """Bidirectional gRPC streaming to a decoupled model: one stream per request, progress responses, then images."""

    protocol = "grpc-stream"

    async def send(self, job: Job) -> Outcome:
        request = self.requests.get(job)
        sent = time.perf_counter_ns()
        first = call = None
        try:
            call = self._stream(iter([request]), timeout=self.config.request_timeout_s, metadata=self.metadata)
            async for response in call:
                first = first or time.perf_counter_ns()
                if response.error_message:
                    return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind="stream_error",
                                   error=response.error_message)
                final = response.infer_response.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return _success(sent, *wire.grpc_images(response.infer_response, job.verify), first=first)
            return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind="stream_ended",
                           error="the stream ended without a final response")
        except Exception as exc:
            return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind=_error_kind(exc),
                           error=_message(exc))
        finally:
            if call is not None:
                call.cancel()  # done with this request's stream (a no-op once the server has closed it)


def _message(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    return details() if callable(details) and details() else str(exc)


def _success(sent: int, count: int, pixels=None, seeds=None, first: int | None = None) -> Outcome:
    """The outcome of a successful response (images and seeds only when they are to be verified)."""
    return Outcome(sent, time.perf_counter_ns(), True, images=count, first_ns=first, pixels=pixels, seeds=seeds)


class HttpTarget:
    """aiohttp POST to /v2/models/<model>/infer with the binary tensor extension (tensors never travel as JSON)."""

    protocol = "http"

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        self.endpoint, self.config, self.model = endpoint, config, config.model_name
        self.url = endpoint.url(self.protocol)
        self.base = f"{'https' if endpoint.tls else 'http'}://{endpoint.address}"
        self._infer_url = f"{self.base}/v2/models/{self.model}/infer"
        self.session = None
        self.requests = EncodedRequests(wire.http_request)

    async def open(self) -> None:
        import aiohttp
        import tritonclient.http  # noqa: F401  (the body encoder: imported now, not during the first request)

        context = None
        if self.endpoint.tls:
            tls = self.config.tls
            context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
            if tls and tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        connector = aiohttp.TCPConnector(limit=0, ssl=context if context is not None else False)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s, connect=self.config.connect_timeout_s)
        self.session = client_session(self.config.compression, self.config.headers, connector=connector,
                                      timeout=timeout)
        await _check_ready(self, self._ready)

    async def _ready(self) -> tuple[bool, bool]:
        async with self.session.get(f"{self.base}/v2/health/live") as live:
            if live.status != 200:
                return False, False
        async with self.session.get(f"{self.base}/v2/models/{self.model}/ready") as ready:
            return True, ready.status == 200

    async def live(self) -> bool:
        try:
            async with self.session.get(f"{self.base}/v2/health/live",
                                        timeout=min(self.config.connect_timeout_s, 5)) as response:
                return response.status == 200
        except Exception:
            return False

    async def statistics(self) -> dict[str, dict]:
        async with self.session.get(f"{self.base}/v2/models/stats") as response:
            response.raise_for_status()
            return attribution.normalize(await response.json())

    async def send(self, job: Job) -> Outcome:
        body, headers = self.requests.get(job)
        sent = time.perf_counter_ns()
        try:
            async with self.session.post(self._infer_url, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status != 200:
                    return Outcome(sent, time.perf_counter_ns(), False, error_kind=f"HTTP {response.status}",
                                   error=payload[:500].decode("utf-8", "replace"))
                length = response.headers.get("Inference-Header-Content-Length")
            parts = wire.http_images(payload, int(length) if length else None, job.verify)
        except Exception as exc:
            return Outcome(sent, time.perf_counter_ns(), False, error_kind=_error_kind(exc), error=str(exc))
        return _success(sent, *parts)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class FakeTarget:
    """No server and no images. `fake://?latency=20ms&stall_at=2s&stall=1s`: each request takes `latency`;
    requests that would leave during [stall_at, stall_at + stall) wait (before they are sent) until the stall ends."""

    def __init__(self, endpoint: Endpoint, config: TargetConfig, protocol: str):
        query = dict(urllib.parse.parse_qsl(endpoint.query))
        unknown = set(query) - {"latency", "stall_at", "stall", "fail_every"}
        if unknown:
            raise ValueError(f"fake:// takes latency, stall_at, stall and fail_every, not {', '.join(sorted(unknown))}")
        self.latency_s = parse_duration(query.get("latency", "10ms"))
        self.stall_at_s = parse_duration(query["stall_at"]) if "stall_at" in query else None
        self.stall_s = parse_duration(query.get("stall", "0"))
        self.fail_every = int(query.get("fail_every", "0"))
        self.protocol, self.url, self.model = protocol, endpoint.url("fake"), config.model_name
        self._started = None
        self._count = 0

    async def open(self) -> None:
        self._started = time.perf_counter()

    async def statistics(self) -> None:
        return None  # no server

    async def live(self) -> bool:
        return True

    async def send(self, job: Job) -> Outcome:
        if self.stall_at_s is not None:
            elapsed = time.perf_counter() - self._started
            if self.stall_at_s <= elapsed < self.stall_at_s + self.stall_s:
                await asyncio.sleep(self.stall_at_s + self.stall_s - elapsed)
        sent = time.perf_counter_ns()
        self._count += 1
        number = self._count
        await asyncio.sleep(self.latency_s)
        if self.fail_every and number % self.fail_every == 0:
            return Outcome(sent, time.perf_counter_ns(), False, error_kind="INTERNAL", error="fake failure")
        return Outcome(sent, time.perf_counter_ns(), True, images=len(job.prompts),
                       first_ns=sent if self.protocol == "grpc-stream" else None)

    async def close(self) -> None:
        pass


class BalancedTarget:
    """Spreads requests over several targets: round-robin, or the one with the fewest requests in flight."""

    def __init__(self, targets: list, policy: str):
        self.targets, self.policy = targets, policy
        self.protocol, self.model = targets[0].protocol, targets[0].model
        self.url = ",".join(t.url for t in targets)
        self._cycle = itertools.cycle(range(len(targets)))
        self._in_flight = [0] * len(targets)

    async def open(self) -> None:
        await asyncio.gather(*(t.open() for t in self.targets))

    async def live(self) -> bool:
        return any(await asyncio.gather(*(t.live() for t in self.targets)))

    async def statistics(self) -> dict[str, dict] | None:
        snapshots = await asyncio.gather(*(t.statistics() for t in self.targets))
        return None if any(s is None for s in snapshots) else attribution.merge(snapshots)

    async def send(self, job: Job) -> Outcome:
        if self.policy == "least-in-flight":
            index = min(range(len(self.targets)), key=self._in_flight.__getitem__)
        else:
            index = next(self._cycle)
        self._in_flight[index] += 1
        try:
            return await self.targets[index].send(job)
        finally:
            self._in_flight[index] -= 1

    async def close(self) -> None:
        await asyncio.gather(*(t.close() for t in self.targets), return_exceptions=True)


async def _check_ready(target, probe) -> None:
    """Raise `TargetUnreachable` unless the server is live and the model ready within the connect timeout."""
    try:
        live, ready = await asyncio.wait_for(probe(), target.config.connect_timeout_s)
    except Exception as exc:
        await target.close()
        raise TargetUnreachable(f"{target.url} is unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    if not live or not ready:
        await target.close()
        what = "is not live" if not live else f"has no ready model '{target.model}'"
        raise TargetUnreachable(f"{target.url} {what}")


def make_target(config: TargetConfig):
    """A target for `config.urls` (several → balanced); raises ValueError for a malformed URL."""
    if not config.urls:
        raise ValueError("the target has no URL")
    targets = []
    for url in config.urls:
        endpoint = parse_url(url, config.protocol)
        if endpoint.transport == "fake":
            targets.append(FakeTarget(endpoint, config, config.protocol))
        else:
            cls = {"grpc": GrpcTarget, "grpc-stream": GrpcStreamTarget, "http": HttpTarget}[config.protocol]
            targets.append(cls(endpoint, config))
    return targets[0] if len(targets) == 1 else BalancedTarget(targets, config.balance)
