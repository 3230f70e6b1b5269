"""The Target interface: every kind satisfies it, the scheme registry builds them, and the engine's observers
see every request's outcome (no server)."""

from __future__ import annotations

import inspect

import pytest

from flux_async.load.engine import Engine
from flux_async.measure.recorder import Recorder
from flux_async.run.capacity import CompletionClock
from flux_async.scenario.config import TargetConfig, parse_scenario
from flux_async.targets import factory
from flux_async.targets.balanced import BalancedTarget
from flux_async.targets.base import Endpoint, Target
from flux_async.targets.factory import Kind, make_target
from flux_async.targets.fake import FakeTarget
from flux_async.targets.grpc import GrpcStreamTarget, GrpcTarget
from flux_async.targets.http import HttpTarget
from flux_async.targets.http_json import NimTarget, OpenAIImagesTarget
from flux_async.verification.verifier import Verifier

METHODS = ("open", "send", "live", "statistics", "close")
PHASES = [{"executor": "constant-concurrency", "concurrency": 1, "duration": "1s"}]


def config(*urls: str, protocol: str = "grpc") -> TargetConfig:
    return parse_scenario({"name": "t", "target": {"urls": list(urls), "protocol": protocol},
                           "workload": {"prompts": ["a"]}, "phases": PHASES}).target


@pytest.mark.parametrize("urls, protocol, cls, images", [
    (["grpc://h:8001"], "grpc", GrpcTarget, True),
    (["grpcs://h:443"], "grpc-stream", GrpcStreamTarget, True),
    (["http://h:8000"], "http", HttpTarget, True),
    (["fake://?latency=1ms"], "http", FakeTarget, False),
    (["http://a:8000", "http://b:8000"], "http", BalancedTarget, True),
    (["http://a:8000", "fake://"], "http", BalancedTarget, False),  # one member without images: none to verify
])
def test_every_kind_is_a_target(urls, protocol, cls, images):
    target = make_target(config(*urls, protocol=protocol))
    assert type(target) is cls and isinstance(target, Target)
    assert all(inspect.iscoroutinefunction(getattr(target, name)) for name in METHODS)
    assert target.returns_images is images
    assert target.protocol == protocol and target.model == ("bls_stream" if protocol == "grpc-stream" else "bls")


@pytest.mark.parametrize("protocol, cls", [("openai-images", OpenAIImagesTarget), ("nim", NimTarget)])
def test_http_json_protocols_are_targets_without_a_default_model(protocol, cls):
    target = make_target(config("https://h:8443", "h:9", protocol=protocol))  # balanced over two
    assert isinstance(target, BalancedTarget) and all(type(t) is cls for t in target.targets)
    assert isinstance(target.targets[0], Target) and target.returns_images and target.unverifiable is None
    assert all(inspect.iscoroutinefunction(getattr(target.targets[0], name)) for name in METHODS)
    assert target.model == "" and target.url == "https://h:8443,http://h:9"
    assert target.returns_seeds is (protocol == "nim")


def test_description_names_protocol_url_and_model():
    assert make_target(config("grpc://h:8001")).description == "grpc grpc://h:8001 · bls"
    assert make_target(config("h:1", "h:2", protocol="http")).description == "http http://h:1,http://h:2 · bls"


def test_an_object_without_send_is_not_a_target():
    class Half:
        protocol, url, model, returns_images = "grpc", "x", "bls", True

        async def open(self): ...

    assert not isinstance(Half(), Target)


def test_an_unknown_scheme_names_the_registered_ones():
    with pytest.raises(ValueError) as error:
        make_target(config("ftp://h:1"))
    assert str(error.value) == "URL 'ftp://h:1': scheme must be one of grpc://, grpcs://, http://, https://, fake://"


def test_a_new_kind_is_one_registry_line(monkeypatch):
    built = []

    def build(endpoint: Endpoint, target_config: TargetConfig) -> FakeTarget:
        built.append(endpoint)
        return FakeTarget(endpoint, target_config)

    monkeypatch.setitem(factory.SCHEMES, "echo", Kind("fake", False, build, server=False))
    target = make_target(config("echo://here?latency=2ms"))
    assert isinstance(target, FakeTarget) and built == [Endpoint("here", "fake", False, "latency=2ms")]
    with pytest.raises(ValueError, match="echo://"):
        make_target(config("ftp://h:1"))


async def test_the_verifier_skips_a_target_without_images():
    verifier = Verifier(parse_scenario({"name": "t", "target": {"url": "fake://"}, "workload": {"prompts": ["a"]},
                                        "phases": PHASES, "verify": True}).verify, config("fake://"), None)
    await verifier.open()
    assert not verifier.enabled and "makes no images" in verifier.note
    await verifier.close()


async def test_observers_see_every_request_and_the_clock_only_successes():
    scenario = parse_scenario({"name": "t", "target": {"url": "fake://?latency=5ms&fail_every=3"},
                               "workload": {"prompts": ["a"]}, "verify": False,
                               "phases": [{"name": "p", "executor": "constant-concurrency", "concurrency": 2,
                                           "duration": "0.3s"}]})
    target = make_target(scenario.target)
    await target.open()
    seen, clock, recorder = [], CompletionClock(), Recorder()
    await Engine(scenario, target, recorder, observers=[lambda *args: seen.append(args), clock]).run()
    counters = recorder.counters["p"]
    assert len(seen) == counters.ok + counters.errors > 10
    assert {phase for phase, _, _ in seen} == {"p"}
    assert clock.done_ns == [outcome.done_ns for _, _, outcome in seen if outcome.ok]
    assert len(clock.done_ns) == counters.ok and counters.errors > 0
