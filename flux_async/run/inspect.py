"""`flux_async inspect URL`: read a Triton model's metadata and config, print the contract flux_async infers for it,
and optionally write a runnable scenario. Without a model, list the server's models and which look like
text-to-image."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from flux_async.errors import UsageError
from flux_async.scenario.config import TargetConfig
from flux_async.scenario.contract_inference import Inference, infer_contract, value_range
from flux_async.scenario.model_contract import Contract, ModelInfo, contract_yaml
from flux_async.scenario.workload import Job
from flux_async.targets.base import TargetUnreachable
from flux_async.targets.factory import make_target, parse_url
from flux_async.targets.model_info import grpc_model_info, grpc_model_names, http_model_info, http_model_names

PROMPTS = ["a red bicycle leaning on a brick wall", "a lighthouse on a cliff at dusk", "a bowl of ramen, top view",
           "an astronaut riding a horse, oil painting"]


@dataclass
class InspectOptions:
    url: str
    protocol: str = "grpc"
    model: str | None = None
    write_scenario: Path | None = None
    steps: int | None = None
    size: tuple[int, int] | None = None  # (height, width)
    probe: bool = True
    timeout_s: float = 30.0


class Server:
    """One Triton endpoint, over gRPC or HTTP, for reading metadata."""

    def __init__(self, options: InspectOptions):
        self.options = options
        self.endpoint = parse_url(options.url, transport(options))
        self.base = f"{'https' if self.endpoint.tls else 'http'}://{self.endpoint.address}"
        self.client: Any = None

    async def __aenter__(self) -> Server:
        if self.endpoint.transport == "grpc":
            import tritonclient.grpc.aio as grpc_aio

            self.client = grpc_aio.InferenceServerClient(self.endpoint.address, ssl=self.endpoint.tls)
            live = self.client.is_server_live()
        else:
            from flux_async.http_session import client_session

            self.client = client_session("none", {})
            live = self._http_live()
        try:
            ok = await asyncio.wait_for(live, self.options.timeout_s)
        except Exception as exc:
            await self.__aexit__()
            raise TargetUnreachable(f"{self.options.url} is unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) \
                from None
        if not ok:
            await self.__aexit__()
            raise TargetUnreachable(f"{self.options.url} is not live")
        return self

    async def _http_live(self) -> bool:
        async with self.client.get(f"{self.base}/v2/health/live") as response:
            return response.status == 200

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            await self.client.close()

    async def models(self) -> list[tuple[str, str]]:
        """The repository's models, and models loaded from elsewhere (the model-control API's file overrides)."""
        if self.endpoint.transport == "grpc":
            return await grpc_model_names(self.client)
        return await http_model_names(self.client, self.base)

    async def info(self, model: str) -> ModelInfo:
        if self.endpoint.transport == "grpc":
            return await grpc_model_info(self.client, model)
        return await http_model_info(self.client, self.base, model)


def transport(options: InspectOptions) -> str:
    """'http' for an http(s):// URL, else the --protocol (a host:port URL)."""
    return "http" if options.url.startswith(("http://", "https://")) else options.protocol


async def inspect(options: InspectOptions, console) -> int:
    """List the models, or infer one model's contract (and write its scenario); the exit code."""
    async with Server(options) as server:
        names = await server.models()
        if options.model is None:
            await _list(server, names, console)
            return 0
        if options.model not in {n for n, _ in names}:
            raise UsageError(f"--model: no model {options.model!r} on {options.url} (its models: "
                             f"{', '.join(n for n, _ in names) or 'none'})")
        try:
            info = await server.info(options.model)
        except Exception as exc:
            raise UsageError(f"--model: cannot read model {options.model!r}'s metadata (is it loaded?): "
                             f"{type(exc).__name__}: {exc}") from None
    inference = infer_contract(info)
    if not inference.text_to_image:
        raise UsageError(inference.reason)
    protocol = "grpc-stream" if info.decoupled else transport(options)
    if not inference.range_known and options.probe:
        inference = await _probe(options, protocol, inference, console)
    _print(info, inference, console)
    if options.write_scenario is not None:
        _write_scenario(options, info, inference, protocol)
        console.print(f"wrote {options.write_scenario}: run it with `python -m flux_async run "
                      f"{options.write_scenario}`", markup=False)
    return 0


async def _list(server: Server, names: list[tuple[str, str]], console) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"models on {server.options.url}", box=box.SIMPLE_HEAD)
    for column in ("model", "state", "text-to-image"):
        table.add_column(column)
    for name, state in names:
        verdict = "not loaded"
        if state in ("READY", ""):
            try:
                inference = infer_contract(await server.info(name))
                verdict = "yes" if inference.text_to_image else "no: " + inference.reason.split(": ", 1)[-1]
            except Exception as exc:
                verdict = f"unknown ({type(exc).__name__})"
        table.add_row(name, state or "?", verdict)
    console.print(table)
    console.print("inspect one with --model NAME (and --write-scenario FILE for a runnable scenario)", markup=False)


async def _probe(options: InspectOptions, protocol: str, inference: Inference, console) -> Inference:
    """Send one prompt and read the image's value range from its pixels (the metadata cannot tell it)."""
    assert inference.contract is not None
    raw = replace(inference.contract, images=replace(inference.contract.images, value_range="0..1"))
    config = TargetConfig(urls=[options.url], protocol=protocol, model=options.model, contract=raw,
                          request_timeout_s=600.0, connect_timeout_s=options.timeout_s)
    target = make_target(config)
    height, width = options.size or (None, None)
    job = Job(0, (PROMPTS[0],), (0,) if "seed" in raw.inputs else None, options.steps, None, height, width, None,
              verify=True)
    try:
        await target.open()
        outcome = await target.send(job)
    except Exception as exc:
        outcome = None
        console.print(f"probe: {type(exc).__name__}: {exc}", markup=False)
    finally:
        await target.close()
    if outcome is None or not outcome.ok or outcome.pixels is None:
        why = "" if outcome is None else f": {outcome.error_kind}: {outcome.error}"
        inference.ambiguities.append(f"the probe request failed{why}; the value range stays a guess")
        return inference
    low, high = float(outcome.pixels.min()), float(outcome.pixels.max())
    found = value_range(low, high)
    images = replace(inference.contract.images, value_range=found)
    inference.ambiguities = [a for a in inference.ambiguities if "its values may be" not in a]
    inference.ambiguities.append(f"value range {found}: from one probe image (values {low:.3g} … {high:.3g})")
    return replace(inference, contract=replace(inference.contract, images=images), range_known=True)


def _print(info: ModelInfo, inference: Inference, console) -> None:
    contract = inference.contract
    assert contract is not None
    kind = f"{info.platform or 'unknown backend'}, max_batch_size {info.max_batch_size}, " \
           f"{'decoupled' if info.decoupled else 'not decoupled'}"
    lines = [f"model {info.name} ({kind}): text-to-image"]
    for field_name in ("prompt", "negative_prompt", "seed", "steps", "guidance", "height", "width",
                       "max_sequence_length"):
        lines.append(f"  {field_name:<20} {inference.fields.get(field_name, 'not sent')}")
    images = contract.images
    how = f"{images.datatype} {images.layout} {images.value_range}" if images.format == "tensor" else \
        f"{images.datatype}, {images.format} files"
    lines.append(f"  {'images':<20} output {images.name} {how}")
    lines.append(f"  {'seeds':<20} {'output ' + contract.seeds if contract.seeds else 'not returned'}")
    lines.append(f"  prompts per request: at most {contract.max_prompts}")
    lines.append(f"  verification: {_verifiable(contract)}")
    console.print("\n".join(lines), markup=False, highlight=False)
    if inference.ambiguities:
        console.print("to settle in the scenario's target.contract:\n" +
                      "\n".join(f"  - {a}" for a in inference.ambiguities), markup=False, highlight=False)


def _verifiable(contract: Contract) -> str:
    if "seed" in contract.inputs:
        return "possible (the model takes a seed)"
    if contract.deterministic:
        return "possible (the server fixes the seed in its config)"
    return f"not possible: {contract.unverifiable}"


def _write_scenario(options: InspectOptions, info: ModelInfo, inference: Inference, protocol: str) -> None:
    contract = inference.contract
    assert contract is not None
    workload: dict[str, Any] = {"prompts": PROMPTS, "seed": 0}
    if options.steps is not None and "steps" in contract.inputs:
        workload["steps"] = options.steps
    if options.size is not None and {"height", "width"} <= set(contract.inputs):
        workload["size"] = f"{options.size[1]}x{options.size[0]}"  # WxH
    if contract.max_prompts > 1 and info.max_batch_size == 0:  # several prompts in one request, as the model allows
        workload["prompts_per_request"] = {1: 2, min(2, contract.max_prompts): 1}
    verifiable = contract.unverifiable is None
    scenario = {
        "name": f"inspect-{info.name}",
        "description": f"written by `flux_async inspect` for model {info.name} at {options.url}",
        "target": {"url": options.url, "protocol": protocol, "model": info.name, "contract": contract_yaml(contract)},
        "workload": workload,
        "phases": [{"name": "warm-up", "executor": "constant-concurrency", "concurrency": 1, "requests": 2,
                    "warmup": True},
                   {"name": "load", "executor": "constant-concurrency", "concurrency": 4, "requests": 16}],
        "verify": {"enabled": verifiable},
        "thresholds": ["error_rate < 1%"],
    }
    header = [f"# flux_async scenario for model {info.name}, written by `python -m flux_async inspect`."]
    if not verifiable:
        header.append(f"# verification is off: {contract.unverifiable}")
    if inference.server_fixed:
        header.append("# fixed by the server (not sent): " + ", ".join(
            f"{f} ({key} = {info.parameters[key]})" for f, key in inference.server_fixed.items()))
    if inference.ambiguities:
        header.append("# settle these in target.contract:")
        header += [f"#   - {a}" for a in inference.ambiguities]
    text = "\n".join(header) + "\n" + yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True, width=120)
    try:
        options.write_scenario.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        options.write_scenario.write_text(text, encoding="utf-8")  # type: ignore[union-attr]
    except OSError as exc:
        raise UsageError(f"--write-scenario: cannot write {options.write_scenario}: {exc}") from None
