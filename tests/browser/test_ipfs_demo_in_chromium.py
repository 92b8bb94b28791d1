"""The bundled ipfs:// demo site in a real browser: click through relative links on its own origin."""

from __future__ import annotations

import pytest

import protoreg
from tests.browser.conftest import ARTIFACTS
from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE, ipfs_core, store_for

pytestmark = pytest.mark.browser


async def test_demo_site_renders_with_css_and_image_and_links_work(tmp_path, browser):
    from aiohttp import web

    from protoreg.gateway import create_app

    core = ipfs_core()
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    state = tmp_path / "state"
    with DEMO_CAR.open("rb") as f:
        root = core.cids.v1_base32(core.car.import_car(f, store_for(ext, state)).roots[0])
    runner = web.AppRunner(create_app(reg, config=protoreg.WorkerConfig(state_dir=str(state))))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        page = await browser.new_page()
        await page.goto(f"http://{root}.ipfs.localhost:{port}/")  # the short form redirects to the site of its own
        origin = page.url.rstrip("/")
        assert origin.startswith(f"http://{root}.ipfs.s") and origin.endswith(f".localhost:{port}")
        assert "A site on ipfs://" in await page.inner_text("h1")
        assert await page.evaluate("getComputedStyle(document.body).maxWidth") == "672px"  # 42rem from the CSS
        assert await page.evaluate("document.querySelector('h1 img').naturalWidth") > 0
        assert await page.evaluate("window.isSecureContext") is True
        await page.click("text=Docs")
        assert page.url == f"{origin}/docs/"
        await page.click("text=Verification")
        assert "Verification" in await page.inner_text("h1")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "ipfs-demo.png"))
    finally:
        await runner.cleanup()
