"""Each target sends one job to the real server; HTTP tensors travel in the binary extension, not as JSON."""

from __future__ import annotations

import pytest

from flux_async.scenario.config import TargetConfig
from flux_async.scenario.workload import Job
from flux_async.targets.base import TargetUnreachable
from flux_async.targets.factory import make_target

JOB = Job(0, ("a lighthouse", "a red bicycle"), (1, 2), 2, 0.0, 64, 64, None)


@pytest.mark.parametrize("protocol", ["grpc", "grpc-stream", "http"])
async def test_target_sends_a_job(protocol, triton_server):
    address = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    target = make_target(TargetConfig(urls=[address], protocol=protocol))
    await target.open()
    try:
        outcome = await target.send(JOB)
    finally:
        await target.close()
    assert outcome.ok, outcome.error
    assert outcome.images == 2 and outcome.sent_ns < outcome.done_ns
    if protocol == "grpc-stream":
        assert outcome.sent_ns < outcome.first_ns < outcome.done_ns  # a progress step came before the images


async def test_http_responses_carry_binary_tensors(triton_server):
    from flux_async.targets import wire

    target = make_target(TargetConfig(urls=[triton_server.http_url], protocol="http"))
    await target.open()
    try:
        body, headers = wire.http_request(Job(0, ("a cat",), (1,), 1, None, 64, 64, None))
        json_size = int(headers["Inference-Header-Content-Length"])
        assert len(body) > json_size  # inputs after the JSON header, as bytes
        async with target.session.post(f"{target.base}/v2/models/bls/infer", data=body, headers=headers) as response:
            payload = await response.read()
            header = int(response.headers["Inference-Header-Content-Length"])
        assert len(payload) - header >= 3 * 64 * 64 * 4  # the image's float32 bytes follow the header
        assert b'"binary_data_size"' in payload[:header]
    finally:
        await target.close()


async def test_a_missing_model_is_reported_unreachable(triton_server):
    target = make_target(TargetConfig(urls=[triton_server.grpc_url], model="no_such_model"))
    with pytest.raises(TargetUnreachable, match="has no ready model 'no_such_model'"):
        await target.open()
