"""Security of the targets: gRPC over TLS with a custom CA (Triton's own TLS), HTTPS with an auth header (through
a TLS reverse proxy that demands it), and a clear exit 3 when the certificate or the header is missing."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from flux_async.launch.triton_server import TritonServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = ROOT / "tests" / "fixtures" / "sleep_repository"
TOKEN = "Bearer s3cret"


def write_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flux_async test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return write_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificates, tiny_weights):
    """The sleeper model on a Triton whose gRPC endpoint speaks TLS only."""
    tls = ["--grpc-use-ssl=true", f"--grpc-server-cert={certificates['cert']}",
           f"--grpc-server-key={certificates['key']}", f"--grpc-root-cert={certificates['ca']}"]
    with TritonServer(model_repository=SLEEPER, weights=str(tiny_weights), extra_args=tls) as server:
        yield server


def run_cli(scenario: dict, folder: Path, *args):
    (folder / "s.yaml").write_text(yaml.safe_dump(scenario))
    return subprocess.run([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                           "--report", str(folder / "r.json"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def scenario(url: str, protocol: str, **target) -> dict:
    return {"target": {"url": url, "protocol": protocol, "model": "sleeper", "connect_timeout": "5s", **target},
            "workload": {"prompts": ["a"], "size": "64x64"}, "verify": False,
            "phases": [{"executor": "constant-concurrency", "concurrency": 2, "requests": 6}]}


def test_grpcs_with_a_custom_ca(tls_server, certificates, tmp_path):
    url = f"grpcs://localhost:{tls_server.grpc_port}"
    result = run_cli(scenario(url, "grpc", tls={"ca_file": str(certificates["ca"])}), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["requests"]["ok"] == 6


def test_grpcs_without_the_ca_is_unreachable(tls_server, tmp_path):
    result = run_cli(scenario(f"grpcs://localhost:{tls_server.grpc_port}", "grpc"), tmp_path)
    assert result.returncode == 3 and "unreachable" in result.stdout


@pytest.fixture(scope="module")
def https_proxy(tls_server, certificates):
    """An HTTPS reverse proxy to the server's HTTP endpoint that answers 401 without the right Authorization."""
    import aiohttp
    from aiohttp import web

    upstream = f"http://{tls_server.http_url}"

    async def forward(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != TOKEN:
            return web.Response(status=401, text="missing or wrong Authorization header")
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, upstream + request.path_qs, data=await request.read(),
                                       headers={k: v for k, v in request.headers.items()
                                                if k.lower() in ("content-type", "inference-header-content-length")}
                                       ) as response:
                body = await response.read()
                headers = {k: v for k, v in response.headers.items()
                           if k.lower() in ("content-type", "inference-header-content-length")}
                return web.Response(status=response.status, body=body, headers=headers)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    port, loop, ready = free_port(), asyncio.new_event_loop(), threading.Event()

    async def serve():
        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(30)
    yield f"https://localhost:{port}"
    loop.call_soon_threadsafe(loop.stop)


def test_https_with_ca_and_auth_header(https_proxy, certificates, tmp_path):
    result = run_cli(scenario(https_proxy, "http", tls={"ca_file": str(certificates["ca"])},
                              headers={"Authorization": TOKEN}), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["requests"]["ok"] == 6


def test_https_without_the_auth_header_is_refused(https_proxy, certificates, tmp_path):
    result = run_cli(scenario(https_proxy, "http", tls={"ca_file": str(certificates["ca"])}), tmp_path)
    assert result.returncode == 3 and "is not live" in result.stdout
