"""HTTP JSON targets: the OpenAI Images API (`openai-images`) and NVIDIA NIM for FLUX (`nim`), over aiohttp.

    openai-images  POST /v1/images/generations  {"model"?, "prompt", "n", "size": "WxH", "response_format": "b64_json",
                                                 "num_inference_steps", "guidance_scale", "seed", "negative_prompt"}
                   → {"created", "data": [{"b64_json": <PNG base64>}, ...]}; ready: GET /health, else /v1/models
    nim            POST /v1/infer  {"prompt", "mode": "base", "seed", "steps", "cfg_scale", "width", "height",
                                    "samples"}
                   → {"artifacts": [{"base64": <PNG/JPEG base64>, "finishReason": "SUCCESS", "seed": int}, ...]};
                   live: GET /v1/health/live, ready: GET /v1/health/ready

One prompt per request; `images_per_prompt` images of it (`n` / `samples`). Only the settings the workload sets are
sent, under the keys of `target.fields` (scenario/http_protocols.py). A response's `Server-Timing` header (W3C:
`name;dur=ms, ...`, as TensorRT-LLM sends) is kept in `Outcome.server_timing`.

Verification: images are compared with the single-prompt image of the same seed. OpenAI responses carry no seed, so
only the first image of a request (the request's seed) is kept; NIM artifacts carry their own seeds, so all are (when
one lacks its seed, only the first image is, as for OpenAI). A request's latency ends when its body is read: decoding
images for verification (PNG, in a worker thread for large bodies) is not counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from flux_async.measure.images import decode_image
from flux_async.scenario.config import TargetConfig
from flux_async.scenario.http_protocols import NIM, OPENAI_IMAGES, fields_for
from flux_async.scenario.workload import Job
from flux_async.targets.base import Endpoint, Outcome, Target, check_ready, error_kind
from flux_async.targets.http import open_session

if TYPE_CHECKING:
    import aiohttp

PNG_SIGNATURE, JPEG_SIGNATURE = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
PARSE_IN_THREAD_BYTES = 2**16  # larger bodies are parsed (JSON, base64, images) off the event loop


class BadResponse(ValueError):
    """A 200 response that is not what the protocol says; the message names the field."""


class NotSucceeded(ValueError):
    """A NIM artifact whose finishReason is not SUCCESS (CONTENT_FILTERED, ERROR, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ---- Server-Timing ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: a metric's name
_PARTS = re.compile(r'(?:[^,;"]|"(?:\\.|[^"\\])*")+|[,;]')  # items and separators, quoted strings kept whole


def parse_server_timing(values: Iterable[str]) -> dict[str, float]:
    """The durations (ms) of `Server-Timing` header values, by metric name: 'server_e2e;dur=123.4, server_gen;dur=100'
    → {'server_e2e': 123.4, 'server_gen': 100.0}. Metrics without a valid `dur`, or with a malformed name, are left
    out; a name given twice keeps its first duration (W3C Server Timing)."""
    timings: dict[str, float] = {}
    for value in values:
        metrics: list[list[str]] = [[]]
        for part in _PARTS.findall(value):
            if part == ",":
                metrics.append([])
            elif part != ";":
                metrics[-1].append(part.strip())
        for metric in metrics:
            if not metric or not _TOKEN.match(metric[0]) or metric[0] in timings:
                continue
            for param in metric[1:]:
                key, _, raw = param.partition("=")
                if key.strip().lower() != "dur":
                    continue
                try:
                    ms = float(raw.strip().strip('"'))
                except ValueError:
                    break
                if math.isfinite(ms) and ms >= 0:
                    timings[metric[0]] = ms
                break
    return timings


# ---- responses ---------------------------------------------------------------------------------------------------
def error_message(payload: bytes) -> str:
    """The message of an error response: OpenAI's `error.message`, FastAPI's `detail`, a `message`, or the text."""
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        for found in (error.get("message") if isinstance(error, dict) else error, data.get("detail"),
                      data.get("message")):
            if found:
                return str(found)[:500]
    return payload[:500].decode("utf-8", "replace")


def image_bytes(item: Any, where: str, key: str) -> bytes:
    """The image of one response item (`where` like 'data[0]'), base64-decoded and checked to be PNG or JPEG."""
    if not isinstance(item, dict):
        raise BadResponse(f"{where}: not a JSON object")
    text = item.get(key)
    if not isinstance(text, str) or not text:
        raise BadResponse(f"{where}.{key}: missing (a base64 image is expected)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadResponse(f"{where}.{key}: not valid base64 ({exc})") from None
    if not raw.startswith((PNG_SIGNATURE, JPEG_SIGNATURE)):
        raise BadResponse(f"{where}.{key}: not a decodable PNG or JPEG image ({len(raw)} bytes, starting "
                          f"{raw[:8].hex()}): no PNG or JPEG signature")
    return raw


def decode_all(images: list[bytes], where: str) -> np.ndarray:
    """[N, 3, H, W] float32 in [0, 1] of PNG/JPEG bytes; `where` formats an item's field ('data[{}].b64_json')."""
    decoded = []
    for i, raw in enumerate(images):
        try:
            decoded.append(decode_image(raw))
        except ValueError as exc:
            raise BadResponse(f"{where.format(i)}: {exc}") from None
    if len({image.shape for image in decoded}) > 1:
        raise BadResponse(f"{where.format('*')}: images of different sizes {sorted({i.shape for i in decoded})}")
    return np.stack(decoded)


Parsed = tuple[int, "np.ndarray | None", "tuple[int, ...] | None"]  # (images, pixels to verify, their seeds)


class JsonTarget(Target):
    """What both protocols share: the session, the POST, the status, JSON and Server-Timing handling."""

    protocol: str
    route: str  # the generation route
    returns_images = True
    returns_seeds: bool  # whether responses say which seed made each image (read by the verifier)
    live_path: str  # the liveness route

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        self.endpoint, self.config, self.model = endpoint, config, config.model_name
        self.url = endpoint.url(self.protocol)
        self.base = f"{'https' if endpoint.tls else 'http'}://{endpoint.address}"
        self.fields = fields_for(self.protocol, config.fields)
        self.unverifiable: str | None = None if self.fields["seed"] is not None else (
            "the server takes no seed (target.fields.seed is null) and returns none: its images cannot be compared "
            "with single runs")
        self.session: aiohttp.ClientSession | None = None
        self.readiness = ""  # what the readiness probe saw, for the unreachable message

    # ---- requests --------------------------------------------------------------------------------------------
    def body(self, job: Job) -> dict[str, Any]:
        """The request's JSON: only what the job sets, under the target's field names."""
        fields, body = self.fields, {}

        def put(name: str, value: Any) -> None:
            key = fields.get(name)
            if key is not None and value is not None:
                body[key] = value

        if self.model:
            body["model"] = self.model
        put("prompt", job.prompts[0])
        for name, value in self.protocol_fields(job).items():
            put(name, value)
        if job.height is not None and job.width is not None:
            put("size", f"{job.width}x{job.height}")
        put("height", job.height)
        put("width", job.width)
        put("steps", job.steps)
        put("guidance", job.guidance)
        put("seed", job.seeds[0] if job.seeds else None)
        put("negative_prompt", job.negative_prompt)
        body.update(job.extra or {})  # a trace line's own fields, as they are (docs/trace.md)
        return body

    def protocol_fields(self, job: Job) -> dict[str, Any]:
        raise NotImplementedError

    def read(self, data: Any, job: Job) -> Parsed:
        """(images received, pixels to verify, their seeds) of a 200 response's JSON; raises BadResponse or
        NotSucceeded."""
        raise NotImplementedError

    def parse(self, payload: bytes, job: Job) -> Parsed:
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise BadResponse(f"response: not JSON ({exc}): {payload[:80]!r}") from None
        if not isinstance(data, dict):
            raise BadResponse(f"response: not a JSON object but {type(data).__name__}")
        return self.read(data, job)

    async def send(self, job: Job) -> Outcome:
        body = json.dumps(self.body(job)).encode()
        sent = time.perf_counter_ns()
        try:
            assert self.session is not None, "open() first"
            async with self.session.post(self.base + self.route, data=body,
                                         headers={"Content-Type": "application/json"}) as response:
                payload = await response.read()
                status, timing = response.status, response.headers.getall("Server-Timing", [])
        except Exception as exc:
            return Outcome(sent, time.perf_counter_ns(), False, error_kind=error_kind(exc),
                           error=str(exc) or type(exc).__name__)
        done = time.perf_counter_ns()
        if status != 200:
            return Outcome(sent, done, False, error_kind=f"HTTP {status}", error=error_message(payload))
        try:
            if len(payload) > PARSE_IN_THREAD_BYTES:
                images, pixels, seeds = await asyncio.to_thread(self.parse, payload, job)
            else:
                images, pixels, seeds = self.parse(payload, job)
        except BadResponse as exc:
            return Outcome(sent, done, False, error_kind="bad_response", error=str(exc))
        except NotSucceeded as exc:
            return Outcome(sent, done, False, error_kind=f"finishReason {exc.reason}", error=str(exc))
        return Outcome(sent, done, True, images=images, pixels=pixels, seeds=seeds,
                       server_timing=parse_server_timing(timing) or None)

    # ---- the rest of the interface ---------------------------------------------------------------------------
    async def open(self) -> None:
        self.session = open_session(self.endpoint, self.config)
        await check_ready(self, self._ready)

    async def _get(self, path: str, timeout_s: float | None = None) -> int:
        import aiohttp

        assert self.session is not None, "open() first"
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
        async with self.session.get(self.base + path, timeout=timeout) as response:
            await response.read()
            return response.status

    async def _ready(self) -> tuple[bool, bool]:
        raise NotImplementedError

    async def live(self) -> bool:
        try:
            return await self._get(self.live_path, min(self.config.connect_timeout_s, 5)) == 200
        except Exception:
            return False

    async def statistics(self) -> None:
        return None  # no Triton statistics behind an HTTP JSON front end

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class OpenAIImagesTarget(JsonTarget):
    """The OpenAI Images API: POST /v1/images/generations, images as `data[].b64_json`; no seeds come back."""

    protocol = OPENAI_IMAGES
    route = "/v1/images/generations"
    returns_seeds = False
    live_path = "/health"  # or /v1/models, when the server has no /health

    def protocol_fields(self, job: Job) -> dict[str, Any]:
        return {"n": job.images_per_prompt, "response_format": "b64_json"}

    async def _ready(self) -> tuple[bool, bool]:
        """Ready when /health answers 200; a server without /health (404, 405) is asked GET /v1/models."""
        seen = []
        for path in ("/health", "/v1/models"):
            status = await self._get(path)
            seen.append(f"GET {path}: {status}")
            if status == 200:
                self.live_path = path
                return True, True
            if status not in (404, 405):
                break
        self.readiness = ", ".join(seen)
        return True, False

    def read(self, data: Any, job: Job) -> Parsed:
        items = data.get("data")
        if not isinstance(items, list) or not items:
            raise BadResponse(f"data: missing or empty (a list of images is expected), got {str(items)[:80]}")
        if len(items) != job.images_per_prompt:
            raise BadResponse(f"data: {len(items)} images, but n = {job.images_per_prompt} were asked for")
        images = [image_bytes(item, f"data[{i}]", "b64_json") for i, item in enumerate(items)]
        if not job.verify or not job.seeds:
            return len(images), None, None
        # no seeds in the response: the request's seed made the first image; the others are not checked
        return len(images), decode_all(images[:1], "data[{}].b64_json"), job.seeds[:1]


class NimTarget(JsonTarget):
    """NVIDIA NIM for FLUX: POST /v1/infer, images as `artifacts[].base64` with their `finishReason` and `seed`."""

    protocol = NIM
    route = "/v1/infer"
    returns_seeds = True
    live_path = "/v1/health/live"

    def protocol_fields(self, job: Job) -> dict[str, Any]:
        return {"mode": "base", "samples": job.images_per_prompt}

    async def _ready(self) -> tuple[bool, bool]:
        live = await self._get("/v1/health/live")
        ready = await self._get("/v1/health/ready") if live == 200 else None
        self.readiness = f"GET /v1/health/live: {live}" + (f", GET /v1/health/ready: {ready}" if ready else "")
        return live == 200, ready == 200

    def read(self, data: Any, job: Job) -> Parsed:
        artifacts = data.get("artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            raise BadResponse(f"artifacts: missing or empty (a list of images is expected), got "
                              f"{str(artifacts)[:80]}")
        for i, artifact in enumerate(artifacts):
            reason = artifact.get("finishReason") if isinstance(artifact, dict) else None
            if reason is not None and reason != "SUCCESS":
                raise NotSucceeded(str(reason), f"artifacts[{i}].finishReason is {reason!r}, not SUCCESS")
        if len(artifacts) != job.images_per_prompt:
            raise BadResponse(f"artifacts: {len(artifacts)} images, but samples = {job.images_per_prompt} were "
                              "asked for")
        images = [image_bytes(artifact, f"artifacts[{i}]", "base64") for i, artifact in enumerate(artifacts)]
        if not job.verify:
            return len(images), None, None
        seeds = [artifact.get("seed") for artifact in artifacts]
        if all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            return len(images), decode_all(images, "artifacts[{}].base64"), tuple(seeds)
        if not job.seeds:  # no seed sent and none returned: nothing can be compared
            return len(images), None, None
        return len(images), decode_all(images[:1], "artifacts[{}].base64"), job.seeds[:1]


PROTOCOL_TARGETS: dict[str, type[JsonTarget]] = {OPENAI_IMAGES: OpenAIImagesTarget, NIM: NimTarget}
