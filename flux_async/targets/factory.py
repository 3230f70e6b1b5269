"""Targets from URLs: a registry of URL schemes, so a new kind of target is one module and one line here."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from flux_async.scenario.config import TargetConfig
from flux_async.targets.balanced import BalancedTarget
from flux_async.targets.base import Endpoint, Target
from flux_async.targets.fake import FakeTarget
from flux_async.targets.grpc import grpc_target
from flux_async.targets.http import HttpTarget
from flux_async.targets.http_json import PROTOCOL_TARGETS


@dataclass(frozen=True)
class Kind:
    """What a URL scheme means: its transport, whether TLS is on, how to build the target, and whether it needs
    a server (a `host:port` that fits the protocol) or takes a free-form `scheme://name?options`."""

    transport: str
    tls: bool
    build: Callable[[Endpoint, TargetConfig], Target]
    server: bool = True


def http_target(endpoint: Endpoint, config: TargetConfig) -> Target:
    """Over HTTP, the protocol picks the target: Triton's KServe v2 (`http`), `openai-images` or `nim`."""
    return PROTOCOL_TARGETS.get(config.protocol, HttpTarget)(endpoint, config)


SCHEMES: dict[str, Kind] = {
    "grpc": Kind("grpc", False, grpc_target),
    "grpcs": Kind("grpc", True, grpc_target),
    "http": Kind("http", False, http_target),
    "https": Kind("http", True, http_target),
    "fake": Kind("fake", False, FakeTarget, server=False),
}


def _transport(protocol: str) -> str:
    return "http" if protocol == "http" or protocol in PROTOCOL_TARGETS else "grpc"


def _resolve(url: str, protocol: str) -> tuple[Endpoint, Kind]:
    if "://" not in url:
        if not url or ":" not in url:
            raise ValueError(f"URL {url!r} must be host:port or scheme://host:port")
        return Endpoint(url, _transport(protocol), False), SCHEMES[_transport(protocol)]
    parts = urllib.parse.urlsplit(url)
    kind = SCHEMES.get(parts.scheme)
    if kind is None:
        raise ValueError(f"URL {url!r}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
    if not kind.server:
        return Endpoint(parts.netloc or parts.scheme, kind.transport, kind.tls, parts.query), kind
    if not parts.port:
        raise ValueError(f"URL {url!r} needs a port")
    if kind.transport != _transport(protocol):
        raise ValueError(f"URL {url!r} is {parts.scheme}:// but the protocol is {protocol}")
    return Endpoint(parts.netloc, kind.transport, kind.tls), kind


def parse_url(url: str, protocol: str) -> Endpoint:
    """`host:port` (transport from the protocol) or `grpc://`, `grpcs://`, `http://`, `https://`, `fake://` URLs."""
    return _resolve(url, protocol)[0]


def make_target(config: TargetConfig) -> Target:
    """A target for `config.urls` (several → balanced); raises ValueError for a malformed URL."""
    if not config.urls:
        raise ValueError("the target has no URL")
    targets = []
    for url in config.urls:
        endpoint, kind = _resolve(url, config.protocol)
        targets.append(kind.build(endpoint, config))
    return targets[0] if len(targets) == 1 else BalancedTarget(targets, config.balance)
