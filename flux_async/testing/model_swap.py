"""Swap a model's implementation on a running server (explicit model control), then restore it from its repository.

Used by the regression suite to load deliberately broken models; useful to anyone testing what their checks catch.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def swapped_model(http_url: str, name: str, model_py: str | Path | None = None,
                  config_changes: dict | None = None) -> Iterator[None]:
    """Within the block, model `name` runs `model_py` (and/or its config with `config_changes` merged in); afterwards
    it is loaded again from the server's model repository. The server must run with --model-control-mode explicit."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(http_url, network_timeout=600.0)
    config = client.get_model_config(name)
    for key, value in (config_changes or {}).items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    files = None
    if model_py:
        files = {"file:1/model.py": Path(model_py).read_bytes()}
        # Triton skips the reload when the config is unchanged, whatever the files: make it differ
        config.setdefault("parameters", {})["flux_async_swapped_in"] = {"string_value": str(model_py)}
    try:
        client.load_model(name, config=json.dumps(config), files=files)
        yield
    finally:
        client.load_model(name)  # back to the repository's own version, also when the swap failed to load
        client.close()
