"""The `server` extra: the packages that run a Triton server and build pipelines, absent from a client install."""

from __future__ import annotations

import importlib.util

from flux_async.errors import MissingExtra

SERVER_MODULES = ("torch", "diffusers", "transformers", "pytriton")  # pytriton: the nvidia-pytriton wheel


def missing_server_modules() -> list[str]:
    """The server extra's top-level modules that cannot be imported here (found without importing them)."""
    return [name for name in SERVER_MODULES if not _findable(name)]


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name; a module whose __spec__ is unset
        return False


def require_server_extra(what: str) -> None:
    """Raise MissingExtra (exit 2, naming the install command) unless the server extra is installed; `what` is
    what needs it, e.g. "serve"."""
    missing = missing_server_modules()
    if missing:
        raise MissingExtra(what, missing)
