"""protoreg's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:
- ``protoreg_registry``: a fresh Registry per test;
- ``install_extension``: a factory writing a manifest and script from strings into tmp_path and installing them;
- ``protoreg_session``: a started Session on that registry, closed after the test;
- ``protoreg_gateway``: a running gateway on a free loopback port, with ``.base_url`` and ``.url(host, scheme)``;
- ``protoreg_browser``: a headless Playwright Browser on the system Chromium (skipped, with the install hint, where
  Chromium or playwright is missing); open custom origins with ``page.goto(protoreg_gateway.url(host, scheme))``
  and check separation with ``protoreg.testing.browser.check_origin_matrix``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import protoreg
from protoreg.testing.bundles import write_extension


@pytest.fixture
def protoreg_registry() -> protoreg.Registry:
    return protoreg.Registry()


@pytest.fixture
def install_extension(protoreg_registry: protoreg.Registry, tmp_path: Path) -> Callable[..., Any]:
    counter = iter(range(1_000_000))

    def install(scheme: str, script: str, *, prefer: bool = False, **options: Any) -> protoreg.Extension:
        root = write_extension(tmp_path / f"ext{next(counter)}", scheme=scheme, script=script, **options)
        return protoreg_registry.install(root, prefer=prefer)

    return install


@pytest.fixture
async def protoreg_session(protoreg_registry: protoreg.Registry) -> AsyncIterator[protoreg.Session]:
    async with protoreg.Session(protoreg_registry) as session:
        yield session


@dataclass
class RunningGateway:
    port: int
    registry: protoreg.Registry | None = None

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}/"

    def url(self, host: str, scheme: str, path: str = "/") -> str:
        """The gateway URL of ``scheme://host/path`` (its origin's site label names the scheme's owner)."""
        from yarl import URL

        from protoreg.gateway.hosts import to_gateway_url

        if self.registry is None:
            raise RuntimeError("RunningGateway.url needs the registry the gateway serves")
        owner = self.registry.lookup(scheme).extension.id
        return str(to_gateway_url(URL(f"{scheme}://{host}{path}", encoded=True), f"localhost:{self.port}", owner))


@pytest.fixture
async def protoreg_gateway(protoreg_registry: protoreg.Registry) -> AsyncIterator[RunningGateway]:
    from aiohttp import web

    from protoreg.gateway import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = web.AppRunner(create_app(protoreg_registry))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningGateway(port, protoreg_registry)
    finally:
        await runner.cleanup()


@pytest.fixture
async def protoreg_browser() -> AsyncIterator[Any]:
    from protoreg.testing.browser import BrowserUnavailable, launch_chromium

    try:
        manager = launch_chromium()
        browser = await manager.__aenter__()
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield browser
    finally:
        await manager.__aexit__(None, None, None)
