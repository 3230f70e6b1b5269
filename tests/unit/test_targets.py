"""URL forms, target selection and balancing (no server)."""

from __future__ import annotations

import asyncio

import pytest

from flux_async.scenario import TargetConfig
from flux_async.targets import BalancedTarget, Endpoint, GrpcStreamTarget, GrpcTarget, HttpTarget, make_target, \
    parse_url


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
    from flux_async.workload import Job

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
