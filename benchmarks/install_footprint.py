"""What each install brings, measured from the built wheel: `pip install flux_async` (the load tester) against
`pip install 'flux_async[server]'`: packages, size on disk, CLI start-up, and that each does its job (the client runs
a scenario against `fake://` without torch and refuses `serve` with the install command; the server extra builds the
tiny weights). Writes benchmarks/results/install_footprint.json and re-renders BENCHMARKS.md.

    uv run python benchmarks/install_footprint.py [--dir /var/tmp/flux-installs]

The installs come from uv's cache when `uv sync` has run (no download); `--dir` should be on the cache's filesystem
so uv can link instead of copying.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, save  # noqa: E402

SERVER_STACK = ("torch", "diffusers", "transformers", "pytriton")
SCENARIO = ("name: footprint\ntarget: {url: 'fake://?latency=5ms'}\nworkload: {prompts: [a cat], size: 64x64}\n"
            "phases:\n  - {name: steady, executor: constant-arrival-rate, rate: 20/s, duration: 2s}\n")


def sh(*command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def install(variant: str, wheel: Path, folder: Path) -> dict:
    """A fresh venv with the wheel (and its extra); what it took and holds."""
    venv = folder / variant
    shutil.rmtree(venv, ignore_errors=True)
    sh("uv", "venv", "-q", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv), check=True)
    python = venv / "bin" / "python"
    requirement = f"{wheel}[server]" if variant == "server" else str(wheel)
    started = time.monotonic()
    sh("uv", "pip", "install", "-q", "--python", str(python), requirement, check=True, cwd=folder)
    seconds = time.monotonic() - started
    packages = json.loads(sh("uv", "pip", "list", "--python", str(python), "--format", "json", check=True).stdout)
    site = Path(sh(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   check=True).stdout.strip())
    startups = []
    for _ in range(5):
        t0 = time.monotonic()
        sh(str(python), "-m", "flux_async", "--help", check=True, cwd=folder)
        startups.append(time.monotonic() - t0)
    present = sh(str(python), "-c", "import importlib.util as u; print(','.join(m for m in "
                 f"{SERVER_STACK!r} if u.find_spec(m)))", check=True).stdout.strip()
    return {"python": str(python), "install_s": round(seconds, 1), "packages": len(packages),
            "site_packages_mb": round(size_mb(site)), "cli_help_s": round(statistics.median(startups), 2),
            "server_stack_present": [m for m in present.split(",") if m]}


def client_checks(python: str, folder: Path) -> dict:
    """The client install runs a scenario end to end, and `serve` says what to install (exit 2)."""
    (folder / "scenario.yaml").write_text(SCENARIO)
    run = sh(python, "-m", "flux_async", "run", "scenario.yaml", "--no-progress", "--report", "r.json",
             "--html", "r.html", cwd=folder)
    report = json.loads((folder / "r.json").read_text()) if (folder / "r.json").is_file() else {}
    serve = sh(python, "-m", "flux_async", "serve", cwd=folder)
    return {"fake_run_exit": run.returncode, "fake_run_requests_ok": report.get("requests", {}).get("ok"),
            "html_written": (folder / "r.html").is_file(), "serve_exit": serve.returncode,
            "serve_says": (serve.stdout + serve.stderr).strip().splitlines()[-1:]}


def server_checks(python: str, folder: Path) -> dict:
    """The server extra builds the tiny pipeline folder (torch, diffusers, transformers at work), and `serve` finds
    the model repository inside the installed package."""
    tiny = folder / "tiny-flux"
    shutil.rmtree(tiny, ignore_errors=True)
    made = sh(python, "-m", "flux_async", "make-tiny-flux", str(tiny), cwd=folder)
    repository = sh(python, "-c", "from flux_async.launch.triton_server import DEFAULT_REPOSITORY as r; "
                    "print(sorted(p.parent.name for p in r.glob('*/config.pbtxt')), 'site-packages' in str(r))",
                    check=True, cwd=folder).stdout.strip()
    return {"make_tiny_flux_exit": made.returncode, "tiny_folder_files": sum(1 for _ in tiny.rglob("*")),
            "packaged_models": repository}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".install-footprint")
    args = parser.parse_args()
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    sh("uv", "build", "--wheel", "-q", "-o", str(folder / "dist"), check=True, cwd=ROOT)
    wheel = max((folder / "dist").glob("flux_async-*.whl"), key=lambda p: p.stat().st_mtime)
    result = {"wheel": wheel.name, "wheel_kb": round(wheel.stat().st_size / 1024)}
    for variant in ("client", "server"):
        result[variant] = install(variant, wheel, folder)
        print(variant, result[variant], flush=True)
    result["client"] |= client_checks(result["client"].pop("python"), folder)
    result["server"] |= server_checks(result["server"].pop("python"), folder)
    print(json.dumps(result, indent=1))
    save("install_footprint", result)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
