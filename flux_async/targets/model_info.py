"""What a Triton server says about its models: the repository index, and each model's metadata and config, read over
gRPC or HTTP and normalized into `ModelInfo` (both speak the same JSON once gRPC's is converted)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from flux_async.scenario.model_contract import ModelInfo, TensorInfo

_CONFIG_TYPES = {"TYPE_STRING": "BYTES", "TYPE_BOOL": "BOOL"}  # the rest is TYPE_<KServe name>


def kserve_datatype(config_type: str) -> str:
    """A config.pbtxt data_type (TYPE_FP32, TYPE_STRING) as KServe names it (FP32, BYTES)."""
    return _CONFIG_TYPES.get(config_type, config_type.removeprefix("TYPE_"))


def model_info(metadata: dict[str, Any], config: dict[str, Any]) -> ModelInfo:
    """A `ModelInfo` from the JSON of `/v2/models/NAME` and `/v2/models/NAME/config` (gRPC's int64s as strings)."""
    optional = {t.get("name"): bool(t.get("optional")) for t in config.get("input", [])}

    def tensors(entries: list[dict], batched: bool) -> list[TensorInfo]:
        found = []
        for entry in entries:
            dims = tuple(int(d) for d in entry.get("shape", []))
            found.append(TensorInfo(entry["name"], entry["datatype"], dims[1:] if batched else dims,
                                    optional.get(entry["name"], False)))
        return found

    batch = int(config.get("max_batch_size", 0) or 0)
    parameters = {key: str(value.get("string_value", "")) for key, value in (config.get("parameters") or {}).items()}
    decoupled = bool((config.get("model_transaction_policy") or {}).get("decoupled", False))
    return ModelInfo(name=metadata.get("name", config.get("name", "")),
                     inputs=tensors(metadata.get("inputs", []), batch > 0),
                     outputs=tensors(metadata.get("outputs", []), batch > 0), max_batch_size=batch,
                     decoupled=decoupled, parameters=parameters,
                     platform=metadata.get("platform", config.get("backend", "")))


async def grpc_model_info(client, model: str, headers: dict | None = None) -> ModelInfo:
    """`ModelInfo` through a `tritonclient.grpc.aio.InferenceServerClient`."""
    metadata = await client.get_model_metadata(model, headers=headers, as_json=True)
    config = await client.get_model_config(model, headers=headers, as_json=True)
    return model_info(metadata, config.get("config", config))


async def grpc_model_names(client, headers: dict | None = None) -> list[tuple[str, str]]:
    """(name, state) of every model in the repository, and of loaded models it does not hold (statistics list
    those: models loaded through the model-control API with their files)."""
    index = await client.get_model_repository_index(headers=headers, as_json=True)
    stats = await client.get_inference_statistics(headers=headers, as_json=True)
    return _names(index.get("models", []), stats.get("model_stats", []))


def _names(index: list[dict], stats: list[dict]) -> list[tuple[str, str]]:
    names = {m["name"]: m.get("state", "") for m in index}
    for model in stats:
        names.setdefault(model["name"], "READY")
    return sorted(names.items())


async def http_model_info(session, base: str, model: str) -> ModelInfo:
    """`ModelInfo` through an aiohttp session to Triton's HTTP endpoint `base` (http://host:port)."""
    name = urllib.parse.quote(model, safe="")
    metadata = await _get_json(session, f"{base}/v2/models/{name}")
    config = await _get_json(session, f"{base}/v2/models/{name}/config")
    return model_info(metadata, config)


async def http_model_names(session, base: str) -> list[tuple[str, str]]:
    """As `grpc_model_names`, over HTTP."""
    async with session.post(f"{base}/v2/repository/index", json={}) as response:
        response.raise_for_status()
        index = await response.json()
    return _names(index, (await _get_json(session, f"{base}/v2/models/stats")).get("model_stats", []))


async def _get_json(session, url: str) -> dict:
    async with session.get(url) as response:
        if response.status != 200:
            raise LookupError(f"GET {url}: HTTP {response.status}: {(await response.text())[:300]}")
        return await response.json()
