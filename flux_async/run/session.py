"""What every run works with, set up once: the options, the embedded server when no URL is given, the opened
target and the verifier with its references (`session`), for `run`, `run --workers` and `capacity` alike."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from flux_async.errors import InvalidTarget, ScenarioError, UsageError
from flux_async.extras import require_server_extra
from flux_async.scenario.config import PROTOCOLS, Scenario
from flux_async.scenario.http_protocols import HTTP_JSON_PROTOCOLS, protocol_problems
from flux_async.targets.base import Target
from flux_async.targets.factory import make_target
from flux_async.verification.verifier import Verifier, workload_keys


@dataclass
class RunOptions:
    """The command line's settings for `run` and `capacity` (None: the scenario's own)."""

    url: str | None = None
    protocol: str | None = None
    model: str | None = None
    report: Path | None = None
    hlog: Path | None = None
    plot: Path | None = None
    html: Path | None = None
    duration_s: float | None = None
    weights: str | None = None
    progress: bool = True
    verify: bool = True  # False: --no-verify
    mismatch_dir: Path | None = None
    metrics_url: str | None = None
    worker: tuple[int, int] | None = None  # (index, count): this process runs one share of a --workers run
    allow_faults: bool = False
    control_url: str | None = None
    model_repository: Path | None = None  # for the embedded server (default: triton_models/)
    request_log: Path | None = None  # one JSON line per request, replayable as a trace (run/request_log.py)


def mismatch_folder(scenario: Scenario, options: RunOptions) -> Path:
    """Where mismatch PNGs go: --mismatch-dir, the scenario's verify.output_dir, or beside the report."""
    if options.mismatch_dir:
        return Path(options.mismatch_dir)
    if scenario.verify.output_dir:
        return Path(scenario.verify.output_dir)
    if options.report:
        return Path(options.report).with_name(Path(options.report).stem + "-mismatches")
    return Path("flux_async-mismatches") / scenario.name


def apply_overrides(scenario: Scenario, options: RunOptions) -> Scenario:
    """The scenario with the command line's --url, --protocol and --model in place of its own."""
    target = scenario.target
    if options.protocol is not None:
        if options.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {options.protocol!r}")
        target = replace(target, protocol=options.protocol)
    if options.url:
        target = replace(target, urls=[u.strip() for u in options.url.split(",") if u.strip()])
    if options.model:
        target = replace(target, model=options.model)
    if options.control_url:
        target = replace(target, control_url=options.control_url)
    if options.duration_s is not None and options.duration_s <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {options.duration_s}")
    problems = protocol_problems(target, scenario.workload)  # parse_scenario checked the scenario's own protocol
    if problems:
        raise ScenarioError(f"{scenario.source} (with --protocol {target.protocol})", problems)
    return replace(scenario, target=target)


@dataclass
class Session:
    """What a run or a capacity search works with: the scenario (URLs filled in), the opened target, the verifier
    with its references, and whether the server is embedded."""

    scenario: Scenario
    target: Target
    verifier: Verifier | None
    embedded: bool
    server: object = None  # the embedded TritonServer


@asynccontextmanager
async def session(scenario: Scenario, options: RunOptions, console, references: dict | None = None):
    """Start the embedded server if no URL is given, open the target, prepare the references (or take `references`
    computed elsewhere: a cluster agent's); clean up after. Raises InvalidTarget (bad URLs), TargetUnreachable or
    ServerError."""
    scenario = apply_overrides(scenario, options)
    async with AsyncExitStack() as stack:
        embedded, server = not scenario.target.urls, None
        if embedded:
            scenario, server = await embedded_server(scenario, options, console, stack)
        try:
            target = make_target(scenario.target)
        except ValueError as exc:
            raise InvalidTarget(f"target.urls: {exc}") from None
        await target.open()
        stack.push_async_callback(target.close)
        verifier = None
        if scenario.verify.enabled and options.verify:
            verifier = Verifier(scenario.verify, scenario.target, mismatch_folder(scenario, options))
            stack.push_async_callback(verifier.close)
            await verifier.open(scenario.workload)
            keys = workload_keys(scenario.workload)
            if references is not None:
                verifier.adopt(references)
            elif verifier.enabled and keys:
                console.print(f"flux_async: computing {len(keys)} reference images (single-prompt requests, one at "
                              "a time) …")
                await verifier.prepare(keys)
        yield Session(scenario, target, verifier, embedded, server)


async def embedded_server(scenario: Scenario, options: RunOptions, console, stack: AsyncExitStack):
    """Start Triton for this run (explicit model control when the scenario injects faults); (scenario, server).
    Raises MissingExtra without the server extra, ServerError when it does not start."""
    if scenario.target.protocol in HTTP_JSON_PROTOCOLS:
        raise UsageError(f"protocol {scenario.target.protocol} needs a URL (--url or target.url): the embedded server "
                         "is Triton alone; `serve --openai-port N --nim-port N` puts a front end before it")
    require_server_extra("a run with no URL (it starts an embedded Triton server)")
    from flux_async.launch.triton_server import DEFAULT_REPOSITORY, TritonServer  # the server extra's

    console.print("flux_async: no URL given: starting an embedded Triton server on the tiny weights …")
    # --exit-timeout-secs: when the run is over, unloading the models gracefully (~15 s here) buys nothing
    server = TritonServer(weights=options.weights, model_control_mode="explicit" if scenario.faults else "none",
                          model_repository=options.model_repository or DEFAULT_REPOSITORY,
                          extra_args=["--exit-timeout-secs=3"])
    await asyncio.to_thread(server.start)
    stack.push_async_callback(asyncio.to_thread, server.stop)
    address = server.http_url if scenario.target.protocol == "http" else server.grpc_url
    return replace(scenario, target=replace(
        scenario.target, urls=[address], metrics_url=scenario.target.metrics_url or server.metrics_url,
        control_url=scenario.target.control_url or f"http://{server.http_url}")), server
