"""Swap a model's implementation on a running server (explicit model control), then restore it from its repository.

Used by the regression suite to load deliberately broken models; useful to anyone testing what their checks catch.
Plain HTTP to Triton's model-repository API (KServe v2 extension), so it needs nothing beyond the standard library.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _call(http_url: str, path: str, body: dict | None = None) -> dict:
    url = (http_url if "://" in http_url else f"http://{http_url}").rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise RuntimeError(f"{url}: {exc.reason}") from None
    return json.loads(text) if text else {}


def swap_in(http_url: str, name: str, model_py: str | Path | None = None, config_changes: dict | None = None) -> None:
    """Load model `name` with `model_py` as its code and/or `config_changes` merged into its config."""
    name = urllib.parse.quote(name, safe="")
    config = _call(http_url, f"/v2/models/{name}/config")
    for key, value in (config_changes or {}).items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    parameters = {}
    if model_py:
        parameters["file:1/model.py"] = base64.b64encode(Path(model_py).read_bytes()).decode()
        # Triton skips the reload when the config is unchanged, whatever the files: make it differ
        config.setdefault("parameters", {})["flux_async_swapped_in"] = {"string_value": str(model_py)}
    parameters["config"] = json.dumps(config)
    _call(http_url, f"/v2/repository/models/{name}/load", {"parameters": parameters})


def load_from_folder(http_url: str, folder: str | Path, config_changes: dict | None = None) -> str:
    """Load the model in `folder` (config.pbtxt and 1/model.py, e.g. one of examples/) onto a running server that
    need not have it in its repository; `config_changes` merge into its config. Returns the model's name."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    folder = Path(folder)
    message = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for key, value in (config_changes or {}).items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    files = {f"file:{path.relative_to(folder).as_posix()}": base64.b64encode(path.read_bytes()).decode()
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "config.pbtxt"
             and "__pycache__" not in path.parts}
    name = config["name"]
    _call(http_url, f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/load",
          {"parameters": {"config": json.dumps(config), **files}})
    return name


def unload(http_url: str, name: str) -> None:
    """Unload model `name` (explicit model control)."""
    _call(http_url, f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/unload", {})


def restore(http_url: str, name: str) -> None:
    """Load model `name` again from the server's model repository."""
    _call(http_url, f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/load", {})


@contextmanager
def swapped_model(http_url: str, name: str, model_py: str | Path | None = None,
                  config_changes: dict | None = None) -> Iterator[None]:
    """Within the block, model `name` runs `model_py` (and/or its config with `config_changes` merged in); afterwards
    it is loaded again from the server's model repository. The server must run with --model-control-mode explicit."""
    try:
        swap_in(http_url, name, model_py, config_changes)
        yield
    finally:
        restore(http_url, name)  # also when the swap failed to load
