"""The OpenAI Images and NIM targets without a real server: request bodies and `target.fields`, the scenario checks,
Server-Timing, finishReason, bad responses (against an aiohttp server answering canned responses), the front end's
validation and batching (with a stand-in for bls), and the report's server-timing figures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import replace

import numpy as np
import pytest

from flux_async.errors import ScenarioError
from flux_async.frontend.openai_nim import Batcher, Generation, RequestError, Settings, parse_nim, parse_openai
from flux_async.measure.images import encode_png
from flux_async.scenario.config import PROTOCOLS, parse_scenario
from flux_async.scenario.workload import Job
from flux_async.targets.base import Target, TargetUnreachable
from flux_async.targets.factory import make_target
from flux_async.targets.http_json import NimTarget, OpenAIImagesTarget, parse_server_timing

PHASES = [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]
JOB = Job(0, ("a cat",), (7,), 2, 0.0, 128, 256, None)


def scenario(protocol: str, fields: dict | None = None, workload: dict | None = None, **target):
    return parse_scenario({"target": {"url": "http://h:9", "protocol": protocol, **({"fields": fields} if fields
                                                                                    is not None else {}), **target},
                           "workload": {"prompts": ["a"], **(workload or {})}, "phases": PHASES})


def problems(data: dict) -> list[str]:
    with pytest.raises(ScenarioError) as error:
        parse_scenario({"workload": {"prompts": ["a"]}, "phases": PHASES} | data)
    return error.value.problems


# ---- bodies and fields -------------------------------------------------------------------------------------------
def test_openai_body_sends_what_the_job_sets_under_the_default_keys():
    target = make_target(scenario("openai-images").target)
    assert isinstance(target, OpenAIImagesTarget) and isinstance(target, Target)
    assert target.body(JOB) == {"prompt": "a cat", "n": 1, "response_format": "b64_json", "size": "256x128",
                                "num_inference_steps": 2, "guidance_scale": 0.0, "seed": 7}
    bare = Job(1, ("a dog",), None, None, None, None, None, None, images_per_prompt=3, negative_prompt="blur")
    assert target.body(bare) == {"prompt": "a dog", "n": 3, "response_format": "b64_json", "negative_prompt": "blur"}
    named = make_target(scenario("openai-images", model="flux-schnell").target)
    assert named.body(bare)["model"] == "flux-schnell" and "model" not in target.body(bare)


def test_nim_body_and_a_renamed_or_dropped_field():
    target = make_target(scenario("nim").target)
    assert isinstance(target, NimTarget)
    assert target.body(JOB) == {"prompt": "a cat", "mode": "base", "samples": 1, "height": 128, "width": 256,
                                "steps": 2, "cfg_scale": 0.0, "seed": 7}
    localai = make_target(scenario("openai-images", {"steps": "step", "guidance": None}).target)
    assert localai.body(JOB) == {"prompt": "a cat", "n": 1, "response_format": "b64_json", "size": "256x128",
                                 "step": 2, "seed": 7}
    split = make_target(scenario("openai-images", {"size": None, "height": "height", "width": "width"}).target)
    assert {k: v for k, v in split.body(JOB).items() if k in ("size", "height", "width")} == {"height": 128,
                                                                                            "width": 256}


def test_model_name_description_and_verifiability():
    target = make_target(scenario("nim").target)
    assert target.model == "" and target.description == "nim http://h:9"
    assert target.unverifiable is None and target.returns_seeds
    assert make_target(scenario("openai-images", model="m").target).description == "openai-images http://h:9 · m"
    blind = make_target(scenario("openai-images", {"seed": None}).target)
    assert "target.fields.seed is null" in blind.unverifiable and not blind.returns_seeds


def test_the_cli_offers_every_protocol():
    from flux_async.cli import PROTOCOL_CHOICES, build_parser

    assert PROTOCOL_CHOICES == PROTOCOLS
    assert build_parser().parse_args(["run", "s.yaml", "--protocol", "nim"]).protocol == "nim"


# ---- scenario checks ---------------------------------------------------------------------------------------------
def test_fields_are_checked_with_their_yaml_paths():
    found = problems({"target": {"protocol": "openai-images", "fields": {"stpes": "x", "seed": 3, "samples": "s"}}})
    assert any(p.startswith("target.fields.stpes: unknown key (allowed: prompt, n, size") for p in found), found
    assert "target.fields.seed: must be the server's JSON key (a non-empty string) or null, got 3" in found
    assert any(p.startswith("target.fields.samples: not a field of protocol openai-images") for p in found), found
    assert problems({"target": {"protocol": "grpc", "fields": {"steps": "step"}}}) == [
        "target.fields: only protocols openai-images and nim take JSON field names (the protocol is grpc)"]


def test_one_prompt_per_request_and_images_per_prompt_only_for_these_protocols():
    found = problems({"target": {"protocol": "nim"}, "workload": {"prompts": ["a"], "prompts_per_request": {1: 1,
                                                                                                           3: 1}}})
    assert len(found) == 1 and found[0].startswith("workload.prompts_per_request: protocol nim sends one prompt per "
                                                   "request, but up to 3")
    found = problems({"target": {"protocol": "http"}, "workload": {"prompts": ["a"], "images_per_prompt": 2,
                                                                    "negative_prompt": "x"}})
    assert [p.split(":")[0] for p in found] == ["workload.images_per_prompt", "workload.negative_prompt"]
    assert "workload.images_per_prompt: must be an integer in [1, 8], got 9" in problems(
        {"target": {"protocol": "nim"}, "workload": {"prompts": ["a"], "images_per_prompt": 9}})
    assert problems({"target": {"protocol": "nim", "fields": {"samples": None}},
                     "workload": {"prompts": ["a"], "images_per_prompt": 2}})[0].startswith(
        "workload.images_per_prompt: 2 images per request, but target.fields.samples is null")
    assert problems({"target": {"protocol": "openai-images"}, "workload": {"prompts": ["a"], "height": 128}}) == [
        "workload.size: protocol openai-images sends the size as WIDTHxHEIGHT (target.fields.size): give both "
        "height and width, or size"]
    assert problems({"target": {"protocol": "nim"}, "workload": {"prompts": ["a"], "max_sequence_length": 64}}) == [
        "workload.max_sequence_length: protocol nim has no such setting (leave it out)"]
    assert scenario("openai-images", workload={"images_per_prompt": 4}).workload.images_per_prompt == 4


def test_protocol_on_the_command_line_is_checked_too():
    from flux_async.run.session import RunOptions, apply_overrides

    grpc = parse_scenario({"workload": {"prompts": ["a"], "prompts_per_request": 2}, "phases": PHASES})
    with pytest.raises(ScenarioError, match="workload.prompts_per_request: protocol openai-images"):
        apply_overrides(grpc, RunOptions(protocol="openai-images", url="http://h:1"))
    assert apply_overrides(replace(grpc, workload=replace(grpc.workload, prompts_per_request={1: 1.0})),
                           RunOptions(protocol="nim", url="http://h:1")).target.protocol == "nim"


# ---- Server-Timing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, expected", [
    (["server_e2e;dur=123.4, server_gen;dur=100.1, server_denoise;dur=90"],
     {"server_e2e": 123.4, "server_gen": 100.1, "server_denoise": 90.0}),
    (["cache;desc=\"a, b; c\";dur=2.5", "db;dur=53"], {"cache": 2.5, "db": 53.0}),  # quoted commas, two headers
    (["miss, total;dur=-1, bad name;dur=3, x;dur=abc, y;DUR=\"7\", y;dur=8"], {"y": 7.0}),  # first one wins
    ([""], {}),
])
def test_server_timing_is_parsed_as_w3c_says(values, expected):
    assert parse_server_timing(values) == expected


# ---- canned responses --------------------------------------------------------------------------------------------
def png_b64(value: float, size: int = 16) -> str:
    return base64.b64encode(encode_png(np.full((3, size, size), value, dtype=np.float32))).decode()


@contextlib.asynccontextmanager
async def canned(routes: dict):
    """An aiohttp server answering `routes[path]` = (status, JSON or bytes, headers); yields its URL."""
    from aiohttp import web

    async def answer(request):
        status, body, headers = routes.get(request.path, (404, {"error": "no route"}, {}))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


VERIFIED = replace(JOB, verify=True)


async def send(protocol: str, routes: dict, job: Job = VERIFIED):
    async with canned(routes) as url:
        target = make_target(replace(scenario(protocol).target, urls=[url]))
        await target.open()
        try:
            return await target.send(job)
        finally:
            await target.close()


HEALTHY = {"/health": (200, {}, {}), "/v1/health/live": (200, {}, {}), "/v1/health/ready": (200, {}, {})}
TIMING = {"Server-Timing": "server_e2e;dur=12.5, server_gen;dur=10"}


async def test_openai_images_are_counted_the_first_kept_with_the_requests_seed_and_timing_recorded():
    body = {"created": 1, "data": [{"b64_json": png_b64(0.2)}, {"b64_json": png_b64(0.8)}]}
    outcome = await send("openai-images", HEALTHY | {"/v1/images/generations": (200, body, TIMING)},
                         replace(JOB, verify=True, images_per_prompt=2))
    assert outcome.ok and outcome.images == 2, outcome.error
    assert outcome.pixels.shape == (1, 3, 16, 16) and outcome.seeds == (7,)
    assert abs(float(outcome.pixels[0].mean()) - 0.2) < 0.01
    assert outcome.server_timing == {"server_e2e": 12.5, "server_gen": 10.0}


async def test_nim_keeps_every_image_with_the_seed_each_artifact_names():
    body = {"artifacts": [{"base64": png_b64(0.1), "finishReason": "SUCCESS", "seed": 41},
                          {"base64": png_b64(0.9), "finishReason": "SUCCESS", "seed": 42}]}
    outcome = await send("nim", HEALTHY | {"/v1/infer": (200, body, {})}, replace(JOB, verify=True,
                                                                                  images_per_prompt=2))
    assert outcome.ok and outcome.images == 2 and outcome.seeds == (41, 42) and outcome.pixels.shape[0] == 2
    assert outcome.server_timing is None
    unverified = await send("nim", HEALTHY | {"/v1/infer": (200, body, {})}, replace(JOB, images_per_prompt=2))
    assert unverified.ok and unverified.pixels is None


@pytest.mark.parametrize("reason", ["CONTENT_FILTERED", "ERROR"])
async def test_a_finish_reason_other_than_success_fails_the_request(reason):
    body = {"artifacts": [{"base64": png_b64(0.0), "finishReason": reason, "seed": 1}]}
    outcome = await send("nim", HEALTHY | {"/v1/infer": (200, body, {})})
    assert not outcome.ok and outcome.error_kind == f"finishReason {reason}"
    assert outcome.error == f"artifacts[0].finishReason is '{reason}', not SUCCESS"


@pytest.mark.parametrize("protocol, answer, message", [
    ("openai-images", {"created": 1}, "data: missing or empty"),
    ("openai-images", {"data": [{"b64_json": "***not base64***"}]}, "data[0].b64_json: not valid base64"),
    ("openai-images", {"data": [{"b64_json": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20).decode()}]},
     "data[0].b64_json: not a decodable PNG or JPEG image (148 bytes, starting 89504e470d0a1a0a)"),
    ("openai-images", {"data": [{"b64_json": base64.b64encode(b"GIF89a....").decode()}]},
     "data[0].b64_json: not a decodable PNG or JPEG image (10 bytes, starting 4749463839612e2e): no PNG or JPEG"),
    ("openai-images", {"data": [{"url": "http://x/1.png"}]}, "data[0].b64_json: missing"),
    ("openai-images", {"data": [{"b64_json": png_b64(0.5)}] * 2}, "data: 2 images, but n = 1 were asked for"),
    ("openai-images", b"<html>oops</html>", "response: not JSON"),
    ("nim", {"artifacts": [{"finishReason": "SUCCESS", "seed": 1}]}, "artifacts[0].base64: missing"),
    ("nim", {"artifacts": []}, "artifacts: missing or empty"),
    ("nim", [1, 2], "response: not a JSON object but list"),
])
async def test_bad_responses_name_the_field(protocol, answer, message):
    route = "/v1/infer" if protocol == "nim" else "/v1/images/generations"
    outcome = await send(protocol, HEALTHY | {route: (200, answer, {})})
    assert not outcome.ok and outcome.error_kind == "bad_response"
    assert outcome.error.startswith(message), outcome.error


async def test_an_error_status_is_http_code_with_the_servers_message():
    answer = (400, {"error": {"message": "n must be an integer in [1, 8], got 9"}}, {})
    outcome = await send("openai-images", HEALTHY | {"/v1/images/generations": answer})
    assert (outcome.ok, outcome.error_kind, outcome.error) == (False, "HTTP 400",
                                                               "n must be an integer in [1, 8], got 9")
    outcome = await send("nim", HEALTHY | {"/v1/infer": (422, {"detail": "steps: too many"}, {})})
    assert (outcome.error_kind, outcome.error) == ("HTTP 422", "steps: too many")


async def test_readiness_routes():
    models_only = {"/v1/models": (200, {"data": []}, {}), "/v1/images/generations": (200, {"data": [
        {"b64_json": png_b64(0.5)}]}, {})}
    assert (await send("openai-images", models_only)).ok  # no /health: /v1/models answers
    with pytest.raises(TargetUnreachable, match=r"is not ready \(GET /health: 503\)"):
        await send("openai-images", {"/health": (503, {}, {}), "/v1/models": (200, {}, {})})
    with pytest.raises(TargetUnreachable, match=r"is not ready \(GET /v1/health/live: 200, GET /v1/health/ready: "
                                                r"503\)"):
        await send("nim", {"/v1/health/live": (200, {}, {}), "/v1/health/ready": (503, {}, {})})
    with pytest.raises(TargetUnreachable, match="is unreachable"):
        target = make_target(replace(scenario("nim").target, urls=["http://127.0.0.1:1"], connect_timeout_s=5))
        await target.open()


# ---- the front end's validation and batching ---------------------------------------------------------------------
@pytest.mark.parametrize("body, status, message", [
    ({"prompt": "a", "n": 9}, 400, "n must be an integer in [1, 8], got 9"),
    ({"prompt": "a", "size": "1000x1000"}, 400, "size must be WIDTHxHEIGHT, each a multiple of 16 in [64, 2048], "
                                                "got '1000x1000'"),
    ({"prompt": ""}, 400, "prompt must be a non-empty string, got ''"),
    ({"prompt": "a", "num_inference_steps": 0}, 400, "num_inference_steps must be an integer in [1, 100], got 0"),
    ({"prompt": "a", "guidance_scale": 31}, 400, "guidance_scale must be a number in [0, 30], got 31"),
    ({"prompt": "a", "response_format": "url"}, 400, "response_format must be b64_json"),
    ({"prompt": "a", "step": 2}, 400, "unknown field 'step' (this server takes model, prompt, n, size"),
    ({"prompt": "a", "negative_prompt": "blur"}, 400, "negative_prompt is not supported"),
    ({"prompt": "a", "model": "dall-e-3"}, 404, "model 'dall-e-3' does not exist: this server serves 'bls'"),
    (["a"], 400, "the request body must be a JSON object, got list"),
])
def test_openai_requests_are_validated_naming_the_field_and_range(body, status, message):
    with pytest.raises(RequestError) as error:
        parse_openai(body, "bls")
    assert error.value.status == status and error.value.message.startswith(message), error.value.message


def test_valid_requests_and_nim_limits():
    generation = parse_openai({"prompt": "a", "n": 2, "size": "256x128", "seed": 5, "num_inference_steps": 2,
                               "model": "bls"}, "bls")
    assert generation == Generation("a", 2, 5, Settings(2, None, 128, 256)) and generation.seeds == [5, 6]
    assert parse_nim({"prompt": "b", "mode": "base", "cfg_scale": 0, "width": 64, "height": 64, "seed": 3,
                      "samples": 1}) == Generation("b", 1, 3, Settings(None, 0.0, 64, 64))
    assert 0 <= parse_nim({"prompt": "c"}).seed < 2**32  # no seed: a random one
    for body, message in (({"prompt": "a", "width": 100}, "width must be a multiple of 16 in [64, 2048], got 100"),
                          ({"prompt": "a", "mode": "canny"}, "mode must be 'base'"),
                          ({"prompt": "a", "samples": 0}, "samples must be an integer in [1, 8], got 0"),
                          ({"prompt": "a", "seed": -1}, "seed must be an integer in [0, 9223372036854775807]")):
        with pytest.raises(RequestError, match=message.replace("[", r"\[").replace("(", r"\(")):
            parse_nim(body)


class FakeBls:
    """Stands in for bls: image i of a request is filled with its seed / 1000; INVALID_ARG for the prompt 'bad'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    async def __call__(self, prompts, seeds, settings):
        self.calls.append(list(prompts))
        await asyncio.sleep(0.01)
        if "bad" in prompts:
            raise RequestError(400, "prompt 'bad' is not allowed")
        images = np.stack([np.full((3, 2, 2), seed / 1000, dtype=np.float32) for seed in seeds])
        return images, list(seeds)


async def test_concurrent_requests_share_one_bls_request_and_each_gets_its_own_images():
    bls = FakeBls()
    batcher = Batcher(bls, max_batch=4, window_s=0.05)
    settings = Settings(1, None, 64, 64)
    asks = [Generation("a", 1, 100, settings), Generation("b", 2, 200, settings), Generation("c", 1, 300, settings),
            Generation("d", 1, 400, settings), Generation("e", 1, 500, Settings(2, None, 64, 64))]
    results = await asyncio.gather(*(batcher.generate(g) for g in asks))
    # a, b (2 prompts), c fill the batch of 4; d waits for the window alone; e has other settings
    assert sorted(bls.calls) == sorted([["a", "b", "b", "c"], ["d"], ["e"]])
    assert batcher.calls == 3 and batcher.combined == 1 and batcher.largest == 4
    for ask, result in zip(asks, results):
        assert result.seeds == ask.seeds and len(result.images) == ask.count
        assert [round(float(image.mean()) * 1000) for image in result.images] == ask.seeds
    assert results[0].batch_prompts == 4 and results[3].batch_prompts == 1


async def test_a_bad_request_in_a_combined_batch_fails_alone():
    bls = FakeBls()
    batcher = Batcher(bls, max_batch=4, window_s=0.05)
    settings = Settings()
    outcomes = await asyncio.gather(batcher.generate(Generation("good", 1, 1, settings)),
                                    batcher.generate(Generation("bad", 1, 2, settings)), return_exceptions=True)
    assert outcomes[0].seeds == [1] and isinstance(outcomes[1], RequestError) and outcomes[1].status == 400
    assert bls.calls[0] == ["good", "bad"] and sorted(bls.calls[1:]) == [["bad"], ["good"]]


# ---- the report --------------------------------------------------------------------------------------------------
def test_server_timing_reaches_the_reports_figures():
    from flux_async.measure.recorder import SERVER_TIMING, Recorder
    from flux_async.report.json_report import figures
    from flux_async.report.schema import Figures

    recorder = Recorder()
    for ms in (10, 20, 30, 40):
        recorder.record("p", SERVER_TIMING + "server_e2e", "nim", 1, ms * 1000)
    recorder.record("p", SERVER_TIMING + "server_gen", "nim", 1, 5000)
    recorder.record("p", "latency", "nim", 1, 50_000)
    scope = figures(recorder, {"p"}, 1.0).to_json()
    timing = scope["server_timing_ms"]
    assert list(timing) == ["server_e2e", "server_gen"]
    assert timing["server_e2e"]["count"] == 4 and timing["server_e2e"]["max"] == pytest.approx(40, rel=0.01)
    assert timing["server_gen"]["p50"] == pytest.approx(5, rel=0.01)
    assert Figures.from_json(scope).to_json() == scope
    assert "server_timing_ms" not in figures(Recorder(), {"p"}, 1.0).to_json()  # absent without Server-Timing
