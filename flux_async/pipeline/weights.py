"""Where the weights come from: a `FluxPipeline` folder, the default tiny pipeline (built once into a cache), or a
FLUX.1-sized random preset built in memory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from flux_async import contract

PRESET_PREFIX = "preset:"
PRESETS = {"flux1-schnell": "schnell", "flux1-dev": "dev"}
TINY_SEED = 0
TINY_FORMAT = 1  # bump when the tiny builder changes, so a stale cached folder is not reused


def cache_dir() -> Path:
    """flux_async's cache folder (FLUX_ASYNC_CACHE, else $XDG_CACHE_HOME/flux_async or ~/.cache/flux_async)."""
    root = (os.environ.get("FLUX_ASYNC_CACHE")
            or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flux_async")
    return Path(root)


def default_tiny_weights(variant: str = "schnell") -> Path:
    """The tiny pipeline in the cache, built on first use (safe when several processes ask at once)."""
    from filelock import FileLock

    from flux_async.pipeline.tiny import make_tiny_flux

    target = cache_dir() / f"tiny-flux-{variant}-seed{TINY_SEED}-v{TINY_FORMAT}"
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "model_index.json").is_file():
            make_tiny_flux(target, seed=TINY_SEED, variant=variant)
    return target


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weights spec: a folder on disk, or a random preset (tokenizers and scheduler from the tiny folder)."""

    folder: Path
    preset: str | None = None

    @property
    def variant(self) -> str:
        """'dev' when the transformer has a guidance embedding, else 'schnell'."""
        return "dev" if self.transformer_config()["guidance_embeds"] else "schnell"

    def transformer_config(self) -> dict:
        if self.preset:
            from flux_async.pipeline.architectures import component_configs

            return component_configs("full", PRESETS[self.preset])["transformer"]
        return _read_json(self.folder / "transformer" / "config.json")

    def vae_config(self) -> dict:
        if self.preset:
            from flux_async.pipeline.architectures import component_configs

            return component_configs("full", PRESETS[self.preset])["vae"]
        return _read_json(self.folder / "vae" / "config.json")

    def scheduler_config(self) -> dict:
        if self.preset:
            from flux_async.pipeline.architectures import SCHEDULERS

            return dict(SCHEDULERS[PRESETS[self.preset]])
        return _read_json(self.folder / "scheduler" / "scheduler_config.json")

    def describe(self) -> str:
        return f"{PRESET_PREFIX}{self.preset}" if self.preset else str(self.folder)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the weights folder is not a FluxPipeline.save_pretrained "
                                f"folder") from None


def resolve_weights(spec: str | os.PathLike | None = None) -> WeightsSource:
    """Turn a weights spec (argument, else FLUX_ASYNC_WEIGHTS, else the tiny default) into a `WeightsSource`."""
    spec = str(spec) if spec else os.environ.get(contract.ENV_WEIGHTS, "").strip()
    if not spec:
        return WeightsSource(default_tiny_weights())
    if spec.startswith(PRESET_PREFIX):
        name = spec[len(PRESET_PREFIX):]
        if name not in PRESETS:
            raise ValueError(f"unknown weights preset {name!r}; known: {', '.join(PRESETS)}")
        return WeightsSource(default_tiny_weights(PRESETS[name]), preset=name)
    folder = Path(spec).expanduser().resolve()
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"weights folder {folder} has no model_index.json (expected a FluxPipeline folder)")
    return WeightsSource(folder)


def load_module(source: WeightsSource, name: str, device, dtype):
    """Load one torch component ('text_encoder', 'text_encoder_2', 'transformer' or 'vae') on `device` in `dtype`."""
    if source.preset:
        from flux_async.pipeline.tiny import build_module

        return build_module(name, "full", PRESETS[source.preset], seed=TINY_SEED, device=device, dtype=dtype)
    module = component_class(name).from_pretrained(source.folder, subfolder=name, torch_dtype=dtype)
    return module.to(device).eval().requires_grad_(False)


def load_tokenizer(source: WeightsSource, name: str):
    """Load 'tokenizer' (CLIP) or 'tokenizer_2' (T5) as FluxPipeline does."""
    # transformers 5 provides the T5TokenizerFast alias only through its lazy module, invisible to mypy
    from transformers import CLIPTokenizer, T5TokenizerFast  # type: ignore[attr-defined]

    cls = {"tokenizer": CLIPTokenizer, "tokenizer_2": T5TokenizerFast}[name]
    return cls.from_pretrained(source.folder, subfolder=name)


def component_class(name: str):
    """The torch class of one component, importing only its library (a text encoder's process never loads
    diffusers' models, which makes reloading it through model control several seconds faster)."""
    if name in ("text_encoder", "text_encoder_2"):
        import transformers

        return getattr(transformers, {"text_encoder": "CLIPTextModel", "text_encoder_2": "T5EncoderModel"}[name])
    import diffusers

    return getattr(diffusers, {"transformer": "FluxTransformer2DModel", "vae": "AutoencoderKL"}[name])
