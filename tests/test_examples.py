"""Every example runs in the test suite, so none of them rots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protoreg.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUNDLES = sorted(p.parent.name for p in EXAMPLES.glob("*/manifest.json"))


@pytest.mark.parametrize("name", BUNDLES)
def test_example_bundles_pass_protoreg_check(name, capsys):
    assert main(["check", str(EXAMPLES / name)]) == 0, capsys.readouterr().err


def test_embed_example_runs_and_shows_fetch_streaming_and_cors():
    out = subprocess.run([sys.executable, str(EXAMPLES / "embed.py")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "Hello from web+hello://world/" in out
    assert "-- 24 bytes echoed --" in out
    assert "blocked: cross-origin fetch from web+demo://a" in out


def test_tester_example_passes_with_the_plugin():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(EXAMPLES / "test_my_extension.py")], capture_output=True, text=True, timeout=180,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


async def test_echo_streaming_example_streams_a_large_body(protoreg_registry, protoreg_session):
    protoreg_registry.install(EXAMPLES / "echo-streaming")

    async def upload():
        for _ in range(64):
            yield b"z" * 65536

    resp = await protoreg_session.fetch("web+echo://x/", method="POST", body=upload())
    body = await resp.read()
    assert body.startswith(b"z" * 1000) and body.endswith(b"-- 4194304 bytes echoed --\n")


async def test_demo_site_pages_and_relative_assets(protoreg_registry, protoreg_session):
    protoreg_registry.install(EXAMPLES / "demo-site")
    page = await protoreg_session.fetch("web+demo://alice/docs/")
    text = await page.text()
    assert page.status == 200 and 'href="../style.css"' in text
    css_url = protoreg_registry.resolve("../style.css", base=str(page.url))
    css = await protoreg_session.fetch(css_url)
    assert css.headers["Content-Type"] == "text/css" and "font" in await css.text()


async def test_granted_fetch_example_fetches_granted_hosts_and_explains_refusals():
    from aiohttp import web

    import protoreg

    async def upstream(_request):
        return web.Response(text="granted upstream")

    app = web.Application()
    app.router.add_get("/", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    reg = protoreg.Registry()
    reg.install(EXAMPLES / "granted-fetch")
    try:
        async with protoreg.Session(reg, allow_private_networks=True) as session:
            ok = await session.fetch(f"web+proxy://x/?url=http://127.0.0.1:{port}/")
            assert (ok.status, await ok.text()) == (200, "granted upstream")
            assert ok.headers["X-Visits-From-This-Origin"] == "1"
            refused = await session.fetch(f"web+proxy://x/?url=http://localhost:{port}/")
            assert refused.status == 403
            assert 'Add "http://localhost/*" to host_permissions to allow it.' in await refused.text()
    finally:
        await runner.cleanup()
