"""`pip install .` gives the load tester without the server's stack, and declares everything the tester imports.

The client is every module of flux_async except the ones that run inside Triton or start it (pipeline/, serving/,
launch/, testing/python_backend.py): those need the `server` extra; and the ones that run on Ray (cluster/,
testing/ray_cluster.py): those need the `cluster` extra. A new third-party import in the client must be mapped below
and declared in pyproject.toml's base dependencies, or this test names it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "flux_async"
SERVER_ONLY = ("pipeline", "serving", "launch")
SERVER_ONLY_FILES = ("testing/python_backend.py",)
CLUSTER_ONLY = ("cluster",)
CLUSTER_ONLY_FILES = ("testing/ray_cluster.py",)
CLUSTER_STACK = {"ray": "ray"}  # top-level module -> the `cluster` extra's distribution
SERVER_STACK = ("torch", "diffusers", "transformers", "nvidia-pytriton", "sentencepiece", "open-clip-torch",
                "accelerate")

# top-level module -> the distribution that provides it
DISTRIBUTIONS = {
    "aiohttp": "aiohttp",
    "numpy": "numpy",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "tritonclient": "tritonclient",
    "grpc": "tritonclient",  # grpcio, through tritonclient[grpc]
    "rapidjson": "python-rapidjson",
    "hdrh": "hdrhistogram",
    "google": "protobuf",
    "pynvml": "nvidia-ml-py",
    "matplotlib": "matplotlib",
    "rich": "rich",
    "jinja2": "jinja2",
    "uvloop": "uvloop",
    "prometheus_client": "prometheus-client",
    "filelock": "filelock",
    "anyio": "anyio",
}
# imports the client does not need: (file, module) -> why
ALLOWED = {
    ("contract.py", "torch"): "compute_dtype_name() asks torch only when called without on_gpu, in the models",
    ("testing/pytest_plugin.py", "pytest"): "the plugin is loaded by pytest, so pytest is there",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _cluster_only(relative: Path) -> bool:
    return relative.parts[0] in CLUSTER_ONLY or relative.as_posix() in CLUSTER_ONLY_FILES


def client_modules() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SERVER_ONLY or relative.as_posix() in SERVER_ONLY_FILES or _cluster_only(relative):
            continue
        files.append(path)
    return files


def cluster_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if _cluster_only(path.relative_to(PACKAGE))]


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file (function-level ones too), stdlib and ours left out."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in ("flux_async", "__future__")}


def test_base_dependencies_leave_out_the_server_stack():
    base = _names(_pyproject()["project"]["dependencies"])
    assert not base & {canonicalize_name(n) for n in SERVER_STACK}, "the server stack belongs in the `server` extra"


def test_server_extra_holds_the_server_stack():
    server = _names(_pyproject()["project"]["optional-dependencies"]["server"])
    assert {canonicalize_name(n) for n in SERVER_STACK} <= server


def test_every_client_import_is_a_declared_base_dependency():
    base = _names(_pyproject()["project"]["dependencies"])
    problems = []
    files = client_modules()
    assert any(p.name == "cli.py" for p in files)
    for path in files:
        relative = path.relative_to(PACKAGE).as_posix()
        for module in sorted(third_party_imports(path)):
            if (relative, module) in ALLOWED:
                continue
            distribution = DISTRIBUTIONS.get(module)
            if distribution is None:
                problems.append(f"{relative}: imports {module!r}, which has no entry in DISTRIBUTIONS")
            elif canonicalize_name(distribution) not in base:
                problems.append(f"{relative}: imports {module!r}, but {distribution!r} is not a base dependency")
    assert not problems, "\n".join(problems)


def test_every_cluster_import_is_a_base_or_cluster_dependency():
    """cluster/ and testing/ray_cluster.py may import Ray (the `cluster` extra) besides the base dependencies."""
    pyproject = _pyproject()
    base = _names(pyproject["project"]["dependencies"])
    cluster = _names(pyproject["project"]["optional-dependencies"]["cluster"])
    assert {canonicalize_name(d) for d in CLUSTER_STACK.values()} <= cluster
    assert not cluster & {canonicalize_name(n) for n in SERVER_STACK}, "the cluster extra needs no server stack"
    problems = []
    files = cluster_modules()
    assert any(p.name == "ray_cluster.py" for p in files)
    for path in files:
        relative = path.relative_to(PACKAGE).as_posix()
        for module in sorted(third_party_imports(path)):
            distribution = CLUSTER_STACK.get(module) or DISTRIBUTIONS.get(module)
            if distribution is None:
                problems.append(f"{relative}: imports {module!r}, which has no entry in DISTRIBUTIONS/CLUSTER_STACK")
            elif canonicalize_name(distribution) not in base | cluster:
                problems.append(f"{relative}: imports {module!r}, but {distribution!r} is neither a base "
                                "dependency nor in the cluster extra")
    assert not problems, "\n".join(problems)


def test_uv_sync_installs_everything_for_development():
    dev = _pyproject()["dependency-groups"]["dev"]
    project = [Requirement(r) for r in dev if canonicalize_name(Requirement(r).name) == "flux-async"]
    assert project and {"server", "test", "cluster"} <= project[0].extras


def test_the_client_imports_the_server_side_only_lazily():
    """A module-level import of pipeline/, serving/ or launch/ from the client would need the `server` extra at
    start-up, one of cluster/ the `cluster` extra; they are imported inside the functions that need them."""
    problems = []
    for path in client_modules():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "flux_async" and len(parts) > 1 and parts[1] in SERVER_ONLY + CLUSTER_ONLY:
                    problems.append(f"{path.relative_to(PACKAGE).as_posix()}: imports {name} at module level")
    assert not problems, "\n".join(problems)
