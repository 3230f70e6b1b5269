"""The HTTP JSON protocols as scenario data: the OpenAI Images API (`openai-images`) and NVIDIA NIM for FLUX (`nim`).

Each protocol has default JSON keys for flux_async's settings; a scenario's `target.fields` renames them for a server
that spells them differently (LocalAI's `step`), or leaves one out (`null`). What a scenario can ask of these
protocols is checked here too (`protocol_problems`), for the YAML and again after `--protocol` overrides it:
one prompt per request, `images_per_prompt` and `negative_prompt` only for them, a size the server can be sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flux_async.scenario.config import TargetConfig, WorkloadConfig
    from flux_async.scenario.reader import Reader

OPENAI_IMAGES, NIM = "openai-images", "nim"
HTTP_JSON_PROTOCOLS = (OPENAI_IMAGES, NIM)

# flux_async's name → the server's JSON key (None: not sent). `size` is sent as "WIDTHxHEIGHT", `height` and `width`
# as numbers; `n` / `samples` is the number of images of the request's one prompt.
DEFAULT_FIELDS: dict[str, dict[str, str | None]] = {
    OPENAI_IMAGES: {"prompt": "prompt", "n": "n", "size": "size", "height": None, "width": None,
                    "response_format": "response_format", "steps": "num_inference_steps",
                    "guidance": "guidance_scale", "seed": "seed", "negative_prompt": "negative_prompt"},
    NIM: {"prompt": "prompt", "mode": "mode", "seed": "seed", "steps": "steps", "guidance": "cfg_scale",
          "width": "width", "height": "height", "size": None, "samples": "samples",
          "negative_prompt": "negative_prompt"},
}
FIELD_NAMES = tuple(dict.fromkeys(name for fields in DEFAULT_FIELDS.values() for name in fields))


def read_fields(r: Reader, value: Any, path: str) -> dict[str, str | None]:
    """`target.fields`: {flux_async name: JSON key or null}; names any protocol knows (protocol_problems checks the
    scenario's own protocol)."""
    if value is None:
        return {}
    fields = r.mapping(value, path, FIELD_NAMES)
    result: dict[str, str | None] = {}
    for name, key in fields.items():
        if name not in FIELD_NAMES:
            continue  # reported by mapping()
        if key is not None and (not isinstance(key, str) or not key.strip()):
            r.problem(f"{path}.{name}", f"must be the server's JSON key (a non-empty string) or null, got {key!r}")
            continue
        result[name] = key
    return result


def fields_for(protocol: str, overrides: dict[str, str | None]) -> dict[str, str | None]:
    """The JSON keys a target of `protocol` sends: its defaults with the scenario's `target.fields` on top."""
    return {**DEFAULT_FIELDS[protocol], **{k: v for k, v in overrides.items() if k in DEFAULT_FIELDS[protocol]}}


def protocol_problems(target: TargetConfig, workload: WorkloadConfig) -> list[str]:
    """What the scenario asks that its protocol cannot do, each as 'yaml.path: message' (the workload's settings
    and each request class's)."""
    problems = _target_problems(target)
    scopes = [("workload", workload)] + [(f"workload.classes.{name}", c.settings)
                                         for name, c in workload.classes.items()]
    for path, settings in scopes:
        # a class's problem that is its workload's (a setting it inherits) is reported once, for the workload
        problems += [p for p in _settings_problems(target, settings, path)
                     if p.replace(f"{path}.", "workload.") not in problems]
    return problems


def _target_problems(target: TargetConfig) -> list[str]:
    protocol, problems = target.protocol, []
    if protocol not in HTTP_JSON_PROTOCOLS:
        if target.fields:
            problems.append(f"target.fields: only protocols {' and '.join(HTTP_JSON_PROTOCOLS)} take JSON field "
                            f"names (the protocol is {protocol})")
        return problems
    if target.contract is not None:
        problems.append(f"target.contract: describes a Triton model's tensors; protocol {protocol} is JSON "
                        "(name its keys in target.fields)")
    known = DEFAULT_FIELDS[protocol]
    for name in target.fields:
        if name not in known:
            problems.append(f"target.fields.{name}: not a field of protocol {protocol} (its fields: "
                            f"{', '.join(known)})")
    if fields_for(protocol, target.fields)["prompt"] is None:
        problems.append(f"target.fields.prompt: cannot be null (protocol {protocol} needs the prompt)")
    return problems


def _settings_problems(target: TargetConfig, workload: WorkloadConfig, path: str) -> list[str]:
    protocol, problems = target.protocol, []
    if protocol not in HTTP_JSON_PROTOCOLS:
        if workload.images_per_prompt != 1:
            problems.append(f"{path}.images_per_prompt: only for protocols {' and '.join(HTTP_JSON_PROTOCOLS)}; "
                            f"Triton's bls makes one image per prompt (the protocol is {protocol}: send the prompt "
                            "several times with prompts_per_request instead)")
        model_contract = target.model_contract
        if workload.negative_prompt is not None and "negative_prompt" not in model_contract.inputs:
            problems.append(f"{path}.negative_prompt: the model's contract maps no input to it (bls takes no "
                            "negative prompt; map one in target.contract.inputs.negative_prompt)")
        most = max(workload.prompts_per_request)
        if most > model_contract.max_prompts:
            problems.append(f"{path}.prompts_per_request: asks for {most} prompts in a request but the model's "
                            f"contract takes at most {model_contract.max_prompts} (target.contract.max_prompts)")
        return problems
    fields = fields_for(protocol, target.fields)
    if max(workload.prompts_per_request) > 1:
        problems.append(f"{path}.prompts_per_request: protocol {protocol} sends one prompt per request, but up to "
                        f"{max(workload.prompts_per_request)} are asked for (give 1; for several images of one "
                        f"prompt use {path}.images_per_prompt)")
    count = "n" if protocol == OPENAI_IMAGES else "samples"
    if workload.images_per_prompt > 1 and fields[count] is None:
        problems.append(f"{path}.images_per_prompt: {workload.images_per_prompt} images per request, but "
                        f"target.fields.{count} is null: the server cannot be asked for them")
    if workload.max_sequence_length is not None:
        problems.append(f"{path}.max_sequence_length: protocol {protocol} has no such setting (leave it out)")
    if workload.negative_prompt is not None and fields["negative_prompt"] is None:
        problems.append(f"{path}.negative_prompt: target.fields.negative_prompt is null: it cannot be sent")
    sized = workload.height is not None or workload.width is not None
    by_size = fields["size"] is not None
    if sized and by_size and (workload.height is None or workload.width is None):
        problems.append(f"{path}.size: protocol {protocol} sends the size as WIDTHxHEIGHT "
                        f"(target.fields.size): give both height and width, or size")
    if sized and not by_size and fields["height"] is None and fields["width"] is None:
        problems.append(f"{path}.size: target.fields sends no size (size, height and width are null for "
                        f"protocol {protocol}): leave the size out or name the server's keys")
    return problems
