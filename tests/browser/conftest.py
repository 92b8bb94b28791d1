"""Real headless Chromium against a real gateway on a free loopback port (skipped with a reason if absent)."""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import protoreg
from protoreg.gateway import create_app

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed: run `python3 tasks.py test`, which installs Debian's chromium")
    return path


@dataclass
class Gateway:
    port: int
    registry: protoreg.Registry

    def url(self, host: str, scheme_label: str, path: str = "/") -> str:
        """The gateway URL of ``<scheme>://host/path`` (``scheme_label`` as in the Host, e.g. ``web-site``)."""
        from yarl import URL

        from protoreg.gateway.hosts import decode_scheme_label, to_gateway_url

        scheme = decode_scheme_label(scheme_label) or scheme_label
        owner = self.registry.lookup(scheme).extension.id
        return str(to_gateway_url(URL(f"{scheme}://{host}{path}", encoded=True), f"localhost:{self.port}", owner))

    def origin(self, host: str, scheme_label: str) -> str:
        return self.url(host, scheme_label).rstrip("/")

    @property
    def dashboard(self) -> str:
        return f"http://localhost:{self.port}/"


def write_extension(root: Path, ext_id: str, scheme: str, script: str, csp: str | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "handler.py").write_text(textwrap.dedent(script))
    manifest: dict[str, Any] = {
        "name": ext_id, "version": "1.0", "browser_specific_settings": {"gecko": {"id": ext_id}},
        "protocol_handlers": [{"protocol": scheme, "name": scheme, "uriHandlerScript": "handler.py",
                               "uriIsTrustworthy": True}]}
    if csp:
        manifest["content_security_policy"] = {"protocol_pages": csp}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def start_gateway() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(registry: protoreg.Registry) -> Gateway:
        runner = web.AppRunner(create_app(registry))
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return Gateway(port, registry)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield b
        await b.close()
