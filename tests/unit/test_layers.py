"""Imports flow one way (docs/architecture.md): a module imports only from its own layer or the layers before it,
and the server side (pipeline/, serving/) never imports the client."""

from __future__ import annotations

import ast
from pathlib import Path

import flux_async

PACKAGE = Path(flux_async.__file__).parent
# client layers in import order; a module may import from its own rank or lower
RANK = {"contract": 0, "http_session": 0, "errors": 0, "extras": 0, "measure": 1, "scenario": 2, "targets": 3,
        "verification": 4, "load": 5, "report": 6, "run": 7, "cluster": 7.5, "launch": 7, "frontend": 7, "cli": 8,
        "testing": 9,
        "__main__": 9}
SERVER_SIDE = {"pipeline", "serving"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, flux_async package) of every `from flux_async.<package>...` import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "flux_async" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
            elif node.module == "flux_async":
                found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (imports are absolute)")
    return found


def test_every_import_goes_to_an_earlier_layer():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for line, other in imports(path):
            if other == "__version__" or other == layer:
                continue
            where = f"{path.relative_to(PACKAGE)}:{line} imports flux_async.{other}"
            if layer in SERVER_SIDE:
                if other not in SERVER_SIDE | {"contract"}:
                    problems.append(f"{where}: the server side imports only contract, pipeline and serving")
            elif other in SERVER_SIDE:
                if layer not in ("launch", "cli", "testing"):
                    problems.append(f"{where}: only launch/, cli and testing/ reach the server side")
            elif RANK[other] > RANK[layer]:
                problems.append(f"{where}: a later layer")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_backward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flux_async.run.runner import RunOptions\n")
    assert imports(module) == [(2, "run")]
