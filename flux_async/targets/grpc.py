"""gRPC targets: unary `ModelInfer` to `bls`, and bidirectional `ModelStreamInfer` to the decoupled `bls_stream`."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from flux_async.measure import attribution
from flux_async.scenario.config import TargetConfig
from flux_async.scenario.workload import Job
from flux_async.targets import wire
from flux_async.targets.base import Endpoint, Outcome, Target, check_contract, check_ready, error_kind, succeeded
from flux_async.targets.model_info import grpc_model_info
from flux_async.targets.wire import EncodedRequests

if TYPE_CHECKING:
    import grpc.aio
    from tritonclient.grpc.aio import InferenceServerClient


class GrpcTarget(Target):
    """Unary gRPC `ModelInfer` to `bls` (or any model, through the scenario's contract): tritonclient.grpc.aio for
    readiness, metadata and statistics; the requests go over a grpc.aio channel of our own as pre-serialized bytes
    (see wire.py)."""

    protocol = "grpc"
    returns_images = True
    _method = "/inference.GRPCInferenceService/ModelInfer"

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        self.endpoint, self.config, self.model = endpoint, config, config.model_name
        self.url = endpoint.url(self.protocol)
        self.client: InferenceServerClient | None = None
        self.channel: grpc.aio.Channel | None = None
        self.metadata = tuple((k.lower(), v) for k, v in config.headers.items()) or None
        self.contract = config.model_contract
        self.unverifiable = self.contract.unverifiable
        self.requests = EncodedRequests(lambda job: wire.grpc_request(self.model, job, self.contract))

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
        await check_ready(self, self._ready)
        await check_contract(self, lambda: grpc_model_info(self.client, self.model, self.config.headers or None))

    async def _ready(self) -> tuple[bool, bool]:
        headers = self.config.headers or None
        assert self.client is not None, "open() first"
        live = await self.client.is_server_live(headers=headers)
        return live, await self.client.is_model_ready(self.model, headers=headers)

    async def live(self) -> bool:
        """Whether the server answers its liveness check (bounded by the connect timeout)."""
        try:
            assert self.client is not None, "open() first"
            return await asyncio.wait_for(self.client.is_server_live(headers=self.config.headers or None),
                                          min(self.config.connect_timeout_s, 5))
        except Exception:
            return False

    async def statistics(self) -> dict[str, dict]:
        """Triton's statistics extension for every model (see attribution.py)."""
        assert self.client is not None, "open() first"
        payload = await self.client.get_inference_statistics(headers=self.config.headers or None, as_json=True)
        return attribution.normalize(payload)

    async def send(self, job: Job) -> Outcome:
        request = self.requests.get(job)
        sent = time.perf_counter_ns()
        try:
            response = await self._infer(request, timeout=self.config.request_timeout_s, metadata=self.metadata)
        except Exception as exc:  # every failure is a result, classified by kind
            return Outcome(sent, time.perf_counter_ns(), False, error_kind=error_kind(exc), error=_message(exc))
        try:
            parts = wire.grpc_images(response, job.verify, self.contract)
        except Exception as exc:  # a response we cannot read is the server's error, not the tester's crash
            return Outcome(sent, time.perf_counter_ns(), False, error_kind="bad_response",
                           error=wire.unreadable(exc))
        return succeeded(sent, *parts)

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
                    try:
                        parts = wire.grpc_images(response.infer_response, job.verify, self.contract)
                    except Exception as exc:
                        return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind="bad_response",
                                       error=wire.unreadable(exc))
                    return succeeded(sent, *parts, first=first)
            return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind="stream_ended",
                           error="the stream ended without a final response")
        except Exception as exc:
            return Outcome(sent, time.perf_counter_ns(), False, first_ns=first, error_kind=error_kind(exc),
                           error=_message(exc))
        finally:
            if call is not None:
                call.cancel()  # done with this request's stream (a no-op once the server has closed it)


def grpc_target(endpoint: Endpoint, config: TargetConfig) -> GrpcTarget:
    """The unary or the streaming target, as the protocol says."""
    return (GrpcStreamTarget if config.protocol == "grpc-stream" else GrpcTarget)(endpoint, config)


def _message(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    return details() if callable(details) and details() else str(exc)
