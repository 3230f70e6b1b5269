"""URL forms, target selection and balancing (no server)."""

from __future__ import annotations

import asyncio

import pytest

from flux_async.scenario.config import TargetConfig
from flux_async.targets.balanced import BalancedTarget
from flux_async.targets.base import Endpoint
from flux_async.targets.factory import make_target, parse_url
from flux_async.targets.grpc import GrpcStreamTarget, GrpcTarget
from flux_async.targets.http import HttpTarget


@pytest.mark.parametrize("url, protocol, expected", [
    ("localhost:8001", "grpc", Endpoint("localhost:8001", "grpc", False)),
    ("localhost:8000", "http", Endpoint("localhost:8000", "http", False)),
    ("grpc://h:8001", "grpc-stream", Endpoint("h:8001", "grpc", False)),
    ("grpcs://h:443", "grpc", Endpoint("h:443", "grpc", True)),
    ("http://h:8000", "http", Endpoint("h:8000", "http", False)),
    ("https://h:8443", "http", Endpoint("h:8443", "http", True)),
    ("fake://x?latency=5ms", "grpc", Endpoint("x", "fake", False, "latency=5ms")),
])
def test_url_forms(url, protocol, expected):
    assert parse_url(url, protocol) == expected


@pytest.mark.parametrize("url, protocol, message", [
    ("ftp://h:1", "grpc", "scheme must be one of"), ("grpc://h", "grpc", "needs a port"),
    ("http://h:8000", "grpc", "is http:// but the protocol is grpc"), ("localhost", "grpc", "host:port"),
])
def test_bad_urls_say_why(url, protocol, message):
    with pytest.raises(ValueError, match=message):
        parse_url(url, protocol)


@pytest.mark.parametrize("protocol, cls", [("grpc", GrpcTarget), ("grpc-stream", GrpcStreamTarget),
                                           ("http", HttpTarget)])
def test_protocol_picks_the_target_and_default_model(protocol, cls):
    target = make_target(TargetConfig(urls=["localhost:9"], protocol=protocol))
    assert isinstance(target, cls)
    assert target.model == ("bls_stream" if protocol == "grpc-stream" else "bls")


async def test_least_in_flight_prefers_the_idle_target():
    config = TargetConfig(urls=["fake://slow?latency=300ms", "fake://fast?latency=10ms"], balance="least-in-flight")
    target = make_target(config)
    assert isinstance(target, BalancedTarget)
    await target.open()
    from flux_async.scenario.workload import Job

    job = Job(0, ("a",), (1,), None, None, None, None, None)
    slow = asyncio.create_task(target.send(job))  # both idle: the first target takes it
    await asyncio.sleep(0.02)
    hits = {"slow": 0, "fast": 0}
    for member, name in zip(target.targets, hits):
        original = member.send

        async def counted(job, original=original, name=name):
            hits[name] += 1
            return await original(job)

        member.send = counted
    for _ in range(5):
        assert (await target.send(job)).ok
    await slow
    assert hits == {"slow": 0, "fast": 5}


def kserve_response(images, seeds) -> tuple[bytes, int]:
    """A KServe v2 binary response body (JSON header, then the tensors' bytes) and its header length."""
    import json

    header = json.dumps({"model_name": "bls", "outputs": [
        {"name": "images", "datatype": "FP32", "shape": list(images.shape),
         "parameters": {"binary_data_size": images.nbytes}},
        {"name": "seeds", "datatype": "INT64", "shape": list(seeds.shape),
         "parameters": {"binary_data_size": seeds.nbytes}}]}).encode()
    return header + images.tobytes() + seeds.tobytes(), len(header)


def test_http_images_view_the_body_in_place_and_agree_with_tritonclient():
    import numpy as np
    import tritonclient.http as httpclient

    from flux_async.targets import wire

    images = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    body, length = kserve_response(images, np.array([7, 9], dtype=np.int64))
    count, pixels, seeds = wire.http_images(body, length, keep_pixels=True)
    expected = httpclient.InferenceServerClient.parse_response_body(body, header_length=length)
    assert count == 2 and seeds == (7, 9) and np.array_equal(pixels, expected.as_numpy("images"))
    assert np.shares_memory(pixels, np.frombuffer(body, dtype=np.uint8))  # a view of the body, not a copy
    assert wire.http_images(body, length, keep_pixels=False) == (2, None, None)


@pytest.mark.parametrize("compression, headers, expected", [("none", {}, "identity"), ("gzip", {}, "gzip"),
                                                       ("none", {"accept-encoding": "br"}, "br")])
async def test_http_calls_ask_for_compression_only_when_the_scenario_does(compression, headers, expected):
    """Against a real aiohttp server: infer, health, readiness, statistics and metrics calls all send the
    Accept-Encoding the scenario chose (aiohttp alone would ask for gzip, which Triton honours)."""
    import numpy as np
    from aiohttp import web

    from flux_async.measure.triton_metrics import MetricsScraper
    from flux_async.scenario.config import parse_scenario
    from flux_async.scenario.workload import JobSource

    seen: dict[str, str] = {}
    body, length = kserve_response(np.zeros((1, 3, 2, 2), dtype=np.float32), np.array([1], dtype=np.int64))

    async def record(request):
        seen[request.path] = ",".join(request.headers.getall("Accept-Encoding", []))  # sent once, not twice
        if request.path.endswith("/infer"):
            return web.Response(body=body, headers={"Inference-Header-Content-Length": str(length)})
        if request.path == "/v2/models/stats":
            return web.json_response({"model_stats": []})
        return web.Response(text="nv_gpu_utilization{gpu_uuid=\"g\"} 0.5\n" if request.path == "/metrics" else "")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        scenario = parse_scenario({"target": {"url": f"http://127.0.0.1:{port}", "protocol": "http",
                                              "compression": compression, "headers": headers},
                                   "workload": {"prompts": ["a"]}, "phases": [{"executor": "constant-concurrency",
                                                                               "concurrency": 1, "requests": 1}]})
        target = make_target(scenario.target)
        await target.open()
        outcome = await target.send(JobSource(scenario.workload).next())
        await target.statistics()
        await target.live()
        await target.close()
        scraper = MetricsScraper(f"http://127.0.0.1:{port}/metrics")
        await scraper()
        await scraper.close()
    finally:
        await runner.cleanup()
    assert outcome.ok and outcome.images == 1, outcome
    assert seen == {"/v2/health/live": expected, "/v2/models/bls/ready": expected, "/v2/models/bls/infer": expected,
                    "/v2/models/stats": expected, "/metrics": "identity",
                    "/v2/models/bls": expected}  # the metadata read to check the contract (empty here: bls's trusted)


def test_grpc_images_from_bytes_view_the_tensors_and_agree_with_protobuf():
    import numpy as np
    from tritonclient.grpc import service_pb2

    from flux_async.targets import wire

    images = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)  # over wire.VIEW_AT_BYTES
    response = service_pb2.ModelInferResponse(model_name="bls", model_version="1", id="7")
    response.parameters["triton_final_response"].bool_param = True
    for name, datatype, array in (("images", "FP32", images), ("seeds", "INT64", np.array([5, 6], dtype=np.int64))):
        output = response.outputs.add(name=name, datatype=datatype)
        output.shape.extend(array.shape)
        response.raw_output_contents.append(array.tobytes())
    data = response.SerializeToString()
    count, pixels, seeds = wire.grpc_images(data, keep_pixels=True)
    assert (count, seeds) == (2, (5, 6)) and np.array_equal(pixels, images)
    assert np.shares_memory(pixels, np.frombuffer(data, dtype=np.uint8))  # viewed in place, not copied
    from_message = wire.grpc_images(response, keep_pixels=True)
    assert from_message[0] == 2 and from_message[2] == (5, 6) and np.array_equal(from_message[1], images)
    assert wire.grpc_images(data, keep_pixels=False) == (2, None, None)
    small = images[:, :, :2, :2].copy()
    response.raw_output_contents[0] = small.tobytes()
    del response.outputs[0].shape[:]
    response.outputs[0].shape.extend(small.shape)
    count, pixels, seeds = wire.grpc_images(response.SerializeToString(), keep_pixels=True)  # protobuf's parser
    assert (count, seeds) == (2, (5, 6)) and np.array_equal(pixels, small)


def test_http_images_skip_outputs_they_do_not_need():
    """An extra output of another datatype (BYTES here) is stepped over, not decoded."""
    import json

    import numpy as np

    from flux_async.targets import wire

    images, seeds = np.ones((1, 3, 2, 2), dtype=np.float32), np.array([3], dtype=np.int64)
    extra = b"\x05\x00\x00\x00hello"
    header = json.dumps({"outputs": [
        {"name": "caption", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(extra)}},
        {"name": "images", "datatype": "FP32", "shape": [1, 3, 2, 2], "parameters": {"binary_data_size": 48}},
        {"name": "seeds", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}]}).encode()
    count, pixels, got = wire.http_images(header + extra + images.tobytes() + seeds.tobytes(), len(header), True)
    assert count == 1 and got == (3,) and np.array_equal(pixels, images)


@pytest.mark.parametrize("size", [100, 2**17], ids=["protobuf", "in-place scan"])
async def test_a_grpc_response_that_cannot_be_read_is_an_error_not_a_crash(size):
    from flux_async.scenario.config import parse_scenario
    from flux_async.scenario.workload import JobSource

    scenario = parse_scenario({"target": {"url": "grpc://127.0.0.1:1"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]})
    target = make_target(scenario.target)

    async def garbage(request, **_):  # the channel's answer, replaced: bytes that are no ModelInferResponse
        return b"\xff" * size

    target._infer = garbage
    outcome = await target.send(JobSource(scenario.workload).next())
    assert not outcome.ok and outcome.error_kind == "bad_response" and outcome.error
