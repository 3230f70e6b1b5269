"""The OpenAI Images API and NVIDIA NIM's FLUX API before one Triton's `bls` (gRPC), with request batching.

    front = FrontEnd("localhost:8001", openai_port=0, nim_port=0).start()   # its own thread and event loop
    print(front.openai_url, front.nim_url)
    ...
    front.stop()                                                             # or `with FrontEnd(...) as front:`

Routes: OpenAI `POST /v1/images/generations`, `GET /health`, `GET /v1/models` (on `openai_port`); NIM
`POST /v1/infer`, `GET /v1/health/live`, `GET /v1/health/ready` (on `nim_port`). `/health`, `/v1/models` and
`/v1/health/ready` answer 200 only while Triton's `bls` is ready (503 otherwise); `/v1/health/live` while the front
end runs. Images come back as PNG base64; NIM artifacts carry their seed, OpenAI items do not.

Batching, as real front ends do it: requests with the same settings (steps, guidance, size) arriving within
`batch_window_ms` are combined into ONE `bls` request of up to `max_batch` prompts (and within bls's pixel budget),
and each response gets its own images back — exactly where a batching bug mixes images up. A request for n images
of one prompt with seed s asks bls for n prompts with seeds s, s+1, ..., s+n-1; a request without a seed gets a
random one. When bls rejects a combined request (INVALID_ARG), each request in it is retried alone, so only the bad
one gets the 400.

Errors: JSON `{"error": {"message": ...}}` — a bad field 400 naming the field and its allowed range (the limits of
flux_async.contract), bls's INVALID_ARG 400 with its message, Triton unavailable 503. Successful responses carry
`Server-Timing: server_e2e;dur=<ms from arrival to response>, server_gen;dur=<ms of the bls call>`.

The apps run on their own event loop in a background thread (`start()` returns once they listen), so `serve` (a
blocking command) and tests (their own loops) use them alike.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from flux_async import contract
from flux_async.measure.images import encode_png

DEFAULT_MAX_BATCH = 4
DEFAULT_BATCH_WINDOW_MS = 10.0


class RequestError(Exception):
    """A request the front end answers with an error: its HTTP status and message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass(frozen=True)
class Settings:
    """What one bls request shares across its prompts (None: bls's default)."""

    steps: int | None = None
    guidance: float | None = None
    height: int | None = None
    width: int | None = None


@dataclass(frozen=True)
class Generation:
    """One HTTP request's ask: `count` images of `prompt`, seeds `seed`, `seed` + 1, ..."""

    prompt: str
    count: int
    seed: int
    settings: Settings

    @property
    def seeds(self) -> list[int]:
        return [(self.seed + i) % (contract.MAX_SEED + 1) for i in range(self.count)]


# ---- request validation ------------------------------------------------------------------------------------------
def _integer(body: dict, key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise RequestError(400, f"{key} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _side(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value % contract.SIZE_MULTIPLE \
            or not contract.MIN_SIZE <= value <= contract.MAX_SIZE:
        raise RequestError(400, f"{key} must be a multiple of {contract.SIZE_MULTIPLE} in [{contract.MIN_SIZE}, "
                                f"{contract.MAX_SIZE}], got {value!r}")
    return value


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(400, f"prompt must be a non-empty string, got {prompt!r}")
    return prompt


def _known(body: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} (this server takes {', '.join(allowed)})")
    if body.get("negative_prompt") not in (None, ""):
        raise RequestError(400, "negative_prompt is not supported: bls takes no negative prompt")
    return body


def _seed(body: dict) -> int:
    seed = _integer(body, "seed", 0, contract.MAX_SEED)
    return secrets.randbelow(2**32) if seed is None else seed


OPENAI_FIELDS = ("model", "prompt", "n", "size", "response_format", "num_inference_steps", "guidance_scale", "seed",
                 "negative_prompt", "user")
NIM_FIELDS = ("prompt", "mode", "seed", "steps", "cfg_scale", "width", "height", "samples", "negative_prompt")


def parse_openai(body: Any, model: str) -> Generation:
    """An OpenAI Images request → Generation; raises RequestError (400, or 404 for another model)."""
    body = _known(body, OPENAI_FIELDS)
    if body.get("model") not in (None, model):
        raise RequestError(404, f"model {body['model']!r} does not exist: this server serves {model!r}",
                           "model_not_found")
    if body.get("response_format") not in (None, "b64_json"):
        raise RequestError(400, f"response_format must be b64_json (this server returns no URLs), got "
                                f"{body['response_format']!r}")
    height = width = None
    if body.get("size") is not None:
        match = re.fullmatch(r"(\d+)x(\d+)", str(body["size"]))
        sides = (int(match.group(1)), int(match.group(2))) if match else None
        if sides is None or any(s % contract.SIZE_MULTIPLE or not contract.MIN_SIZE <= s <= contract.MAX_SIZE
                                for s in sides):
            raise RequestError(400, f"size must be WIDTHxHEIGHT, each a multiple of {contract.SIZE_MULTIPLE} in "
                                    f"[{contract.MIN_SIZE}, {contract.MAX_SIZE}], got {body['size']!r}")
        assert sides is not None
        width, height = sides
    settings = Settings(_integer(body, "num_inference_steps", contract.MIN_STEPS, contract.MAX_STEPS),
                        _number(body, "guidance_scale", contract.MIN_GUIDANCE, contract.MAX_GUIDANCE), height, width)
    count = _integer(body, "n", 1, contract.MAX_PROMPTS) or 1
    return Generation(_prompt(body), count, _seed(body), settings)


def parse_nim(body: Any) -> Generation:
    """A NIM FLUX request → Generation; raises RequestError (400)."""
    body = _known(body, NIM_FIELDS)
    if body.get("mode") not in (None, "base"):
        raise RequestError(400, f"mode must be 'base' (this server does text to image only), got {body['mode']!r}")
    settings = Settings(_integer(body, "steps", contract.MIN_STEPS, contract.MAX_STEPS),
                        _number(body, "cfg_scale", contract.MIN_GUIDANCE, contract.MAX_GUIDANCE),
                        _side("height", body.get("height")), _side("width", body.get("width")))
    count = _integer(body, "samples", 1, contract.MAX_PROMPTS) or 1
    return Generation(_prompt(body), count, _seed(body), settings)


# ---- batching ----------------------------------------------------------------------------------------------------
@dataclass
class Result:
    """What one HTTP request gets back from a (combined) bls request."""

    images: np.ndarray  # [count, 3, H, W]
    seeds: list[int]
    bls_ms: float  # the bls call's duration
    batch_prompts: int  # prompts in the bls request it shared


Infer = Callable[[list[str], list[int], Settings], Awaitable[tuple[np.ndarray, list[int]]]]


@dataclass
class _Batch:
    settings: Settings
    limit: int
    items: list[tuple[Generation, asyncio.Future]]
    prompts: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Combines the generations that arrive within `window_s` (same settings, up to `max_batch` prompts and bls's
    pixel budget) into one `infer` call, and gives each its own images back (`split`)."""

    def __init__(self, infer: Infer, max_batch: int = DEFAULT_MAX_BATCH,
                 window_s: float = DEFAULT_BATCH_WINDOW_MS / 1000):
        self.infer, self.max_batch, self.window_s = infer, max_batch, window_s
        self._open: dict[Settings, _Batch] = {}
        self._tasks: set[asyncio.Task] = set()
        self.calls = 0  # bls requests made
        self.combined = 0  # of those, carrying more than one HTTP request
        self.largest = 0  # the most prompts in one

    def _limit(self, settings: Settings) -> int:
        side = contract.DEFAULT_SIZE
        pixels = (settings.height or side) * (settings.width or side)
        return max(1, min(self.max_batch, contract.MAX_PROMPTS, contract.DEFAULT_MAX_PIXELS_PER_REQUEST // pixels))

    async def generate(self, generation: Generation) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        batch = self._open.get(generation.settings)
        if batch is not None and batch.prompts + generation.count > batch.limit:
            self._flush(batch)
            batch = None
        if batch is None:
            batch = _Batch(generation.settings, self._limit(generation.settings), [])
            self._open[generation.settings] = batch
            batch.timer = loop.call_later(self.window_s, self._flush, batch)
        batch.items.append((generation, future))
        batch.prompts += generation.count
        if batch.prompts >= batch.limit:
            self._flush(batch)
        return await future

    def _flush(self, batch: _Batch) -> None:
        if self._open.get(batch.settings) is not batch:
            return  # flushed already (full before its window ended)
        del self._open[batch.settings]
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(batch.settings, batch.items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, settings: Settings, items: list[tuple[Generation, asyncio.Future]]) -> None:
        prompts = [g.prompt for g, _ in items for _ in range(g.count)]
        seeds = [seed for g, _ in items for seed in g.seeds]
        started = time.perf_counter()
        self.calls += 1
        self.combined += len(items) > 1
        self.largest = max(self.largest, len(prompts))
        try:
            images, used = await self.infer(prompts, seeds, settings)
        except RequestError as error:
            if error.status == 400 and len(items) > 1:  # one bad request must not fail the others: each alone
                await asyncio.gather(*(self._run(settings, [item]) for item in items))
                return
            for _, future in items:
                if not future.done():
                    future.set_exception(error)
            return
        except Exception as exc:  # never leave a request waiting
            for _, future in items:
                if not future.done():
                    future.set_exception(RequestError(500, f"{type(exc).__name__}: {exc}", "server_error"))
            return
        bls_ms = (time.perf_counter() - started) * 1000
        parts = self.split(images, used, [g.count for g, _ in items])
        for (_, future), (own_images, own_seeds) in zip(items, parts):
            if not future.done():
                future.set_result(Result(own_images, own_seeds, bls_ms, len(prompts)))

    def split(self, images: np.ndarray, seeds: list[int], counts: list[int]) -> list[tuple[np.ndarray, list[int]]]:
        """Each request's images and seeds, in the order the prompts were combined."""
        parts, start = [], 0
        for count in counts:
            parts.append((images[start:start + count], seeds[start:start + count]))
            start += count
        return parts

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# ---- Triton ------------------------------------------------------------------------------------------------------
_STATUS = {"INVALID_ARGUMENT": 400, "UNAVAILABLE": 503, "NOT_FOUND": 503, "DEADLINE_EXCEEDED": 504}


class TritonBls:
    """`bls` over gRPC (tritonclient.grpc.aio), on the loop that creates it."""

    def __init__(self, url: str, model: str = contract.BLS, timeout_s: float = 600.0):
        import tritonclient.grpc.aio as grpc_aio

        self.module, self.model, self.timeout_s = grpc_aio, model, timeout_s
        self.client = grpc_aio.InferenceServerClient(url)

    async def __call__(self, prompts: list[str], seeds: list[int], settings: Settings) -> tuple[np.ndarray, list[int]]:
        from tritonclient.utils import InferenceServerException

        from flux_async.targets.bls_inputs import bls_inputs

        inputs = bls_inputs(self.module, prompts, seeds=seeds, num_inference_steps=settings.steps,
                            guidance_scale=settings.guidance, height=settings.height, width=settings.width)
        outputs = [self.module.InferRequestedOutput("images"), self.module.InferRequestedOutput("seeds")]
        try:
            result = await self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            code = str(exc.status() or "").replace("StatusCode.", "")
            status = _STATUS.get(code, 500)
            raise RequestError(status, exc.message() or str(exc),
                               "invalid_request_error" if status == 400 else "server_error") from None
        return result.as_numpy("images"), [int(s) for s in result.as_numpy("seeds")]

    async def ready(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.is_model_ready(self.model), 5))
        except Exception:
            return False

    async def close(self) -> None:
        await self.client.close()


# ---- the HTTP apps -----------------------------------------------------------------------------------------------
def encode_images(images: np.ndarray) -> list[str]:
    """[N, 3, H, W] in [0, 1] → PNG base64 strings."""
    return [base64.b64encode(encode_png(image)).decode("ascii") for image in images]


class FrontEnd:
    """The OpenAI and/or NIM apps before one Triton's bls, run by `start()` in a thread with its own event loop."""

    batcher_class = Batcher  # tests/fixtures swaps in a deliberately broken one

    def __init__(self, grpc_url: str, *, openai_port: int | None = None, nim_port: int | None = None,
                 host: str = "0.0.0.0", model: str = contract.BLS, max_batch: int = DEFAULT_MAX_BATCH,
                 batch_window_ms: float = DEFAULT_BATCH_WINDOW_MS, request_timeout_s: float = 600.0):
        if openai_port is None and nim_port is None:
            raise ValueError("give openai_port, nim_port or both")
        if max_batch < 1 or batch_window_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and batch_window_ms >= 0, got {max_batch}, {batch_window_ms}")
        self.grpc_url, self.host, self.model = grpc_url, host, model
        self.ports = {"openai": openai_port, "nim": nim_port}
        self.max_batch, self.batch_window_ms, self.request_timeout_s = max_batch, batch_window_ms, request_timeout_s
        self.requests = 0  # HTTP generation requests answered
        self.batcher: Batcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._runners: list = []
        self._bls: TritonBls | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> FrontEnd:
        """Listen on the ports (0 = a free one; the chosen ones are in `ports`); raises OSError when one is taken."""
        self._thread = threading.Thread(target=self._main, name="flux_async-frontend", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the front end did not start within {timeout_s:g} s")
        if self._error is not None:
            self._thread.join(5)
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    def __enter__(self) -> FrontEnd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def url(self, which: str) -> str | None:
        port = self.ports[which]
        return None if port is None else f"http://localhost:{port}"

    @property
    def openai_url(self) -> str | None:
        return self.url("openai")

    @property
    def nim_url(self) -> str | None:
        return self.url("nim")

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # told to start()'s caller
            self._error = exc
            loop.run_until_complete(self._cleanup())
            loop.close()
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        self._bls = TritonBls(self.grpc_url, self.model, self.request_timeout_s)
        self.batcher = self.batcher_class(self._bls, self.max_batch, self.batch_window_ms / 1000)
        apps = {"openai": [web.post("/v1/images/generations", self._openai), web.get("/health", self._health),
                           web.get("/v1/models", self._models)],
                "nim": [web.post("/v1/infer", self._nim), web.get("/v1/health/live", self._live),
                        web.get("/v1/health/ready", self._health)]}
        for which, routes in apps.items():
            if self.ports[which] is None:
                continue
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, self.host, self.ports[which])
            await site.start()
            self.ports[which] = runner.addresses[0][1]

    async def _cleanup(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self.batcher is not None:
            await self.batcher.close()
        if self._bls is not None:
            await self._bls.close()

    # ---- handlers --------------------------------------------------------------------------------------------
    @staticmethod
    def _error_response(error: RequestError):
        from aiohttp import web

        return web.json_response({"error": {"message": error.message, "type": error.kind}}, status=error.status)

    async def _generate(self, request, parse: Callable[[Any], Generation], shape: Callable[[list[str], Result], dict]):
        from aiohttp import web

        arrived = time.perf_counter()
        assert self.batcher is not None
        try:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise RequestError(400, f"the request body is not JSON: {exc}") from None
            result = await self.batcher.generate(parse(body))
        except RequestError as error:
            return self._error_response(error)
        encoded = await asyncio.to_thread(encode_images, result.images)
        self.requests += 1
        timing = f"server_e2e;dur={(time.perf_counter() - arrived) * 1000:.1f}, server_gen;dur={result.bls_ms:.1f}"
        return web.json_response(shape(encoded, result), headers={"Server-Timing": timing})

    async def _openai(self, request):
        return await self._generate(request, lambda body: parse_openai(body, self.model),
                                    lambda encoded, _: {"created": int(time.time()),
                                                        "data": [{"b64_json": image} for image in encoded]})

    async def _nim(self, request):
        return await self._generate(request, parse_nim, lambda encoded, result: {"artifacts": [
            {"base64": image, "finishReason": "SUCCESS", "seed": seed} for image, seed in zip(encoded, result.seeds)]})

    async def _health(self, request):
        from aiohttp import web

        assert self._bls is not None
        if await self._bls.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "message": f"Triton's {self.model} is not ready"},
                                 status=503)

    async def _live(self, request):
        from aiohttp import web

        return web.json_response({"status": "live"})

    async def _models(self, request):
        from aiohttp import web

        assert self._bls is not None
        if not await self._bls.ready():
            return web.json_response({"error": {"message": f"Triton's {self.model} is not ready"}}, status=503)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model",
                                                              "owned_by": "flux_async"}]})
