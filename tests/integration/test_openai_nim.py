"""The OpenAI Images and NIM protocols end to end: flux_async's front end (flux_async/frontend) on free ports before
the session's real Triton, and scenario runs against it with verification on — batches form and every checked image
matches its single run; a front end that swaps two items of a combined batch is caught (exit 1); a bad field is an
`HTTP 400` and the server stays healthy; an unreachable URL exits 3."""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from flux_async.frontend.openai_nim import FrontEnd

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red bicycle", "a lighthouse at dusk", "a bowl of ramen", "a snowy owl", "a paper boat"]


def swapping_frontend_class() -> type[FrontEnd]:
    spec = importlib.util.spec_from_file_location("swapping_frontend", ROOT / "tests/fixtures/swapping_frontend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SwappingFrontEnd


@pytest.fixture(scope="module")
def front(triton_server):
    """Both protocols before the session's Triton, on free ports; a window long enough that concurrent requests of
    a run always meet."""
    with FrontEnd(triton_server.grpc_url, openai_port=0, nim_port=0, host="127.0.0.1", batch_window_ms=50) as front:
        yield front


def scenario(protocol: str, url: str, requests: int = 8, **workload) -> dict:
    return {"name": f"{protocol}-batched", "target": {"url": url, "protocol": protocol, "request_timeout": "120s"},
            "workload": {"prompts": PROMPTS, "seed": 300, "steps": 1, "size": "64x64", **workload},
            "phases": [{"name": "batched", "executor": "constant-concurrency", "concurrency": 4,
                        "requests": requests}]}


@pytest.mark.parametrize("protocol, images_per_prompt", [("openai-images", 1), ("nim", 2)])
async def test_batched_requests_come_back_right_with_server_timing(protocol, images_per_prompt, front, run_scenario,
                                                                   tmp_path):
    url = front.openai_url if protocol == "openai-images" else front.nim_url
    combined = front.batcher.combined
    report = await run_scenario(scenario(protocol, url, images_per_prompt=images_per_prompt),
                                html=tmp_path / "report.html")
    assert report["exit_code"] == 0 and report["passed"], report["output"]
    assert report["target"] == {"url": url, "protocol": protocol, "model": ""}
    assert report["requests"]["ok"] == 8 and report["images"]["ok"] == 8 * images_per_prompt
    assert front.batcher.combined > combined  # requests shared bls requests
    verification = report["verification"]
    # nim: each artifact's seed is returned, so both images of every request are checked
    assert verification["mismatches"] == 0 and verification["checked"] == 8 * images_per_prompt
    timing = report["phases"][0]["server_timing_ms"]
    assert set(timing) == {"server_e2e", "server_gen"} and timing["server_e2e"]["count"] == 8
    assert 0 < timing["server_gen"]["p50"] <= timing["server_e2e"]["p50"] <= report["latency_ms"]["max"]
    assert report["server_timing_ms"] == timing  # the only measured phase
    assert "server timing server_e2e" in report["output"]
    assert 'class="server-timing"' in (tmp_path / "report.html").read_text()


async def test_openai_with_several_images_checks_the_first_and_says_so(front, run_scenario):
    report = await run_scenario(scenario("openai-images", front.openai_url, requests=4, images_per_prompt=2))
    assert report["exit_code"] == 0 and report["images"]["ok"] == 8
    verification = report["verification"]
    assert verification["checked"] == 4 and verification["mismatches"] == 0
    assert "only the first of each request's 2 images" in verification["note"]


@pytest.mark.parametrize("protocol", ["openai-images", "nim"])
async def test_a_front_end_that_swaps_batch_items_is_caught(protocol, triton_server, run_scenario):
    swapping = swapping_frontend_class()
    with swapping(triton_server.grpc_url, openai_port=0, nim_port=0, host="127.0.0.1", batch_window_ms=50) as front:
        url = front.openai_url if protocol == "openai-images" else front.nim_url
        report = await run_scenario(scenario(protocol, url))
        assert front.batcher.combined > 0
    assert report["exit_code"] == 1 and not report["passed"]
    assert report["verification"]["mismatches"] > 0, report["output"]
    assert "MISMATCH" in report["output"]


async def test_a_bad_field_is_http_400_and_the_server_stays_healthy(front, run_scenario):
    # LocalAI's spelling of the steps: this server names the unknown field in a 400
    bad = scenario("openai-images", front.openai_url, requests=3) | {"verify": False}
    bad["target"]["fields"] = {"steps": "step"}
    report = await run_scenario(bad)
    assert report["exit_code"] == 1 and report["errors_by_kind"] == {"HTTP 400": 3}
    with urllib.request.urlopen(f"{front.openai_url}/health", timeout=10) as response:
        assert response.status == 200
    body = json.dumps({"prompt": "a snowy owl", "size": "64x64", "num_inference_steps": 1, "seed": 1}).encode()
    request = urllib.request.Request(f"{front.openai_url}/v1/images/generations", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and len(json.loads(response.read())["data"]) == 1
        assert response.headers["Server-Timing"].startswith("server_e2e;dur=")
    for route, payload in (("/v1/images/generations", {"prompt": "a", "n": 9}),
                           ("/v1/images/generations", {"prompt": "a", "size": "64x64", "num_inference_steps": 1,
                                                       "seed": 1, "step": 2})):
        request = urllib.request.Request(f"{front.openai_url}{route}", json.dumps(payload).encode())
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=30)
        assert error.value.code == 400 and "error" in json.loads(error.value.read())
    # valid fields, but over bls's memory budget: Triton's INVALID_ARG comes back as a 400 with bls's message
    request = urllib.request.Request(f"{front.nim_url}/v1/infer", json.dumps(
        {"prompt": "a", "samples": 8, "width": 2048, "height": 2048, "steps": 1}).encode())
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=60)
    assert error.value.code == 400 and "memory budget" in json.loads(error.value.read())["error"]["message"]


def test_an_unreachable_url_exits_3(tmp_path, capsys):
    from flux_async.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario("nim", "http://127.0.0.1:1")))
    assert main(["run", str(path), "--no-progress"]) == 3
    assert "unreachable" in capsys.readouterr().out
