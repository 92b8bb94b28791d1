"""Origin separation, CORS, relative URLs, CSP and secure contexts as a real browser sees them."""

from __future__ import annotations

import pytest

import protoreg
from tests.browser.conftest import ARTIFACTS, write_extension

pytestmark = pytest.mark.browser

SITE = """
from protoreg import Response

seen = []
PAGE = '''<!doctype html><meta charset=utf-8><title>t</title>
<link rel=stylesheet href="./x.css"><img id=img src="../img.png"><script src="/abs.js"></script>
<script>window.inlineRan = true;</script>'''

async def handleRequest(request):
    path = request.url.path
    seen.append(path)
    if path == "/seen":
        return Response.json(seen)
    if path in ("/", "/d/page.html"):
        return Response(PAGE, headers={"Content-Type": "text/html"})
    if path == "/d/x.css":
        return Response("body { color: rgb(1, 2, 3); }", headers={"Content-Type": "text/css"})
    if path == "/img.png":
        import base64
        png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        return Response(png, headers={"Content-Type": "image/png"})
    if path == "/abs.js":
        return Response("window.absLoaded = true;", headers={"Content-Type": "text/javascript"})
    if path == "/open":
        return Response("open data", headers={"Access-Control-Allow-Origin": request.headers.get("Origin", "")})
    if path == "/closed":
        return Response("closed data")
    return Response.error(404)
"""


@pytest.fixture
async def gateway(tmp_path, start_gateway):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "site", "site@test", "web+site", SITE))
    reg.install(write_extension(tmp_path / "strict", "strict@test", "web+strict", SITE,
                                csp="script-src 'self'"))
    reg.install(write_extension(tmp_path / "inline", "inline@test", "web+inline", SITE,
                                csp="script-src 'self' 'unsafe-inline'"))
    return await start_gateway(reg)


async def test_two_hosts_of_one_scheme_have_separate_storage_cookies_and_indexeddb(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("a", "web-site"))
    await page.evaluate("""async () => {
        localStorage.setItem('k', 'from-a');
        document.cookie = 'c=from-a; path=/';
        await new Promise((ok, bad) => {
            const r = indexedDB.open('db', 1);
            r.onupgradeneeded = () => r.result.createObjectStore('s');
            r.onsuccess = () => { const tx = r.result.transaction('s', 'readwrite');
                                  tx.objectStore('s').put('from-a', 'k'); tx.oncomplete = ok; tx.onerror = bad; };
            r.onerror = bad;
        });
    }""")
    await page.goto(gateway.url("b", "web-site"))
    seen_b = await page.evaluate("""async () => {
        const names = (await indexedDB.databases()).map(d => d.name);
        return {ls: localStorage.getItem('k'), cookie: document.cookie, dbs: names};
    }""")
    assert seen_b == {"ls": None, "cookie": "", "dbs": []}
    await page.goto(gateway.url("a", "web-site"))
    seen_a = await page.evaluate("() => ({ls: localStorage.getItem('k'), cookie: document.cookie})")
    assert seen_a == {"ls": "from-a", "cookie": "c=from-a"}


async def test_fetch_from_a_to_b_is_blocked_without_allow_origin_and_allowed_with_it(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("a", "web-site"))
    result = await page.evaluate("""async ([closed, open]) => {
        const out = {};
        try { await (await fetch(closed)).text(); out.closed = 'read'; } catch (e) { out.closed = 'blocked'; }
        try { out.open = await (await fetch(open)).text(); } catch (e) { out.open = 'blocked'; }
        return out;
    }""", [gateway.url("b", "web-site", "/closed"), gateway.url("b", "web-site", "/open")])
    assert result == {"closed": "blocked", "open": "open data"}


async def test_relative_urls_load_from_the_right_custom_urls(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("rel", "web-site", "/d/page.html"))
    await page.wait_for_function("document.getElementById('img').complete")
    state = await page.evaluate("""() => ({color: getComputedStyle(document.body).color,
        img: document.getElementById('img').naturalWidth, abs: window.absLoaded === true})""")
    assert state == {"color": "rgb(1, 2, 3)", "img": 1, "abs": True}
    seen = await page.evaluate("async () => (await fetch('/seen')).json()")
    assert {"/d/page.html", "/d/x.css", "/img.png", "/abs.js"} <= set(seen)


async def test_inline_script_follows_the_extension_policy(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("x", "web-strict"))
    assert await page.evaluate("window.inlineRan === true") is False
    assert await page.evaluate("window.absLoaded === true") is True  # 'self' scripts still run
    await page.goto(gateway.url("x", "web-inline"))
    assert await page.evaluate("window.inlineRan === true") is True


async def test_custom_origins_on_localhost_are_secure_contexts(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("a", "web-site"))
    assert await page.evaluate("window.isSecureContext") is True
    assert await page.evaluate("location.origin") == gateway.origin("a", "web-site")


async def test_dashboard_renders_and_is_not_readable_from_custom_origins(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("a", "web-site"))
    read = await page.evaluate("""async (u) => { try { await (await fetch(u)).text(); return 'read'; }
                                                 catch (e) { return 'blocked'; } }""", gateway.dashboard)
    assert read == "blocked"
    await page.goto(gateway.dashboard)
    assert "protoreg gateway" in await page.inner_text("h1")
    assert await page.locator("text=site@test").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5000
