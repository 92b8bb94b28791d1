"""Content scripts in Chromium (issue 14): they run on ipfs:// pages they match and on none they don't, never on
the dashboard, and under a strict page CSP only the injected file runs (the page's inline script stays blocked)."""

from __future__ import annotations

import json

import pytest

import protoreg
from tests.browser.conftest import write_extension

pytestmark = pytest.mark.browser

PAGES = """
from protoreg import Response

async def handleRequest(request):
    page = ("<!doctype html><html><head><title>page</title></head><body><p id=p>page</p>"
            "<script>document.title = 'inline ran'</script></body></html>")
    headers = {"Content-Type": "text/html"}
    if request.url.path.startswith("/strict"):
        headers["Content-Security-Policy"] = "default-src 'none'"
    return Response(page, headers=headers)
"""
NOOP = "async def handleRequest(request):\n    return None\n"
JS = "document.documentElement.dataset.cs = 'ran:' + location.pathname;\n"
CSS = "#p { color: rgb(1, 2, 3); }\n"


@pytest.fixture
async def gateway(tmp_path, start_gateway):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "ipfs", "ipfs@test", "ipfs", PAGES))
    reg.install(write_extension(tmp_path / "other", "other@test", "web+other", PAGES))
    cs = write_extension(tmp_path / "cs", "cs@test", "web+cs", NOOP)
    (cs / "content.js").write_text(JS)
    (cs / "content.css").write_text(CSS)
    manifest = json.loads((cs / "manifest.json").read_text())
    manifest["host_permissions"] = ["ipfs://*/*"]
    manifest["content_scripts"] = [{"matches": ["ipfs://*/*"], "exclude_matches": ["ipfs://*/skip/*"],
                                    "js": ["content.js"], "css": ["content.css"]}]
    (cs / "manifest.json").write_text(json.dumps(manifest))
    reg.install(cs)
    return await start_gateway(reg)


async def _state(page, url: str) -> tuple[str | None, str, str]:
    await page.goto(url)
    await page.wait_for_load_state("load")
    ran = await page.evaluate("document.documentElement.dataset.cs || null")
    color = await page.evaluate("getComputedStyle(document.getElementById('p')).color")
    return ran, color, await page.title()


async def test_content_scripts_run_where_they_match_and_nowhere_else(gateway, browser):
    page = await browser.new_page()
    assert await _state(page, gateway.url("bafyaaa", "ipfs", "/a")) == ("ran:/a", "rgb(1, 2, 3)", "inline ran")
    ran, color, _ = await _state(page, gateway.url("bafyaaa", "ipfs", "/skip/b"))
    assert ran is None and color != "rgb(1, 2, 3)"
    ran, color, _ = await _state(page, gateway.url("x", "web-other", "/a"))
    assert ran is None and color != "rgb(1, 2, 3)"
    await page.goto(gateway.dashboard)
    assert await page.evaluate("document.documentElement.dataset.cs || null") is None
    assert await page.evaluate("document.querySelectorAll('[data-protoreg-content]').length") == 0


async def test_under_a_strict_csp_only_the_injected_file_runs(gateway, browser):
    page = await browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    ran, color, title = await _state(page, gateway.url("bafyaaa", "ipfs", "/strict"))
    assert ran == "ran:/strict"
    assert title == "page"  # the page's own inline script was blocked
    assert any("inline script" in v.lower() or "script-src" in v for v in violations), violations
    assert color == "rgb(1, 2, 3)"


FILTER = """
async def filterResponse(response, chunks):
    async for chunk in chunks:
        yield chunk.replace(b"<p id=p>page</p>", b"<p id=p>rewritten by a filter</p>")
"""


async def test_a_response_filter_rewriting_html_shows_in_the_browser(tmp_path, start_gateway, browser):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "ipfs", "ipfs@test", "ipfs", PAGES))
    f = write_extension(tmp_path / "f", "filter@test", "web+filter", NOOP)
    (f / "f.py").write_text(FILTER)
    manifest = json.loads((f / "manifest.json").read_text())
    manifest.update(permissions=["responseFilter"], host_permissions=["ipfs://*/*"],
                    response_filters=[{"matches": ["ipfs://*/*"], "script": "f.py", "types": ["text/html"]}])
    (f / "manifest.json").write_text(json.dumps(manifest))
    reg.install(f)
    gateway = await start_gateway(reg)
    page = await browser.new_page()
    await page.goto(gateway.url("bafyaaa", "ipfs", "/a"))
    assert await page.text_content("#p") == "rewritten by a filter"
    assert await page.title() == "inline ran"  # the rest of the page is untouched
