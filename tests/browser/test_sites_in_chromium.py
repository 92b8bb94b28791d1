"""Every custom origin is its own browser site: no cookie (by header or by script), document.domain or service
worker path between two origins, including after another extension takes over a scheme."""

from __future__ import annotations

import pytest

import protoreg
from tests.browser.conftest import write_extension

pytestmark = pytest.mark.browser

COOKIES = """
from protoreg import Response

async def handleRequest(request):
    path = request.url.path
    site = request.url.query.get("site", "")
    if path == "/set":  # the widest Domain the browser could accept, by header
        return Response("<!doctype html><title>set</title>", headers={
            "Content-Type": "text/html",
            "Set-Cookie": f"hdr=1; Path=/; Domain={site}" if site else "hdr=1; Path=/"})
    if path == "/merge":  # a handler trying to opt out of origin-keyed agent clusters
        return Response("<!doctype html><title>merge</title>",
                        headers={"Content-Type": "text/html", "Origin-Agent-Cluster": "?0"})
    return Response("<!doctype html><title>page</title>", headers={"Content-Type": "text/html"})
"""


@pytest.fixture
async def gateway(tmp_path, start_gateway):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "a", "a@test", "web+a", COOKIES))
    reg.install(write_extension(tmp_path / "b", "b@test", "web+b", COOKIES))
    return await start_gateway(reg)


def registrable(url: str) -> str:
    """The browser's site of a gateway URL: the label before localhost, plus localhost."""
    host = url.split("/")[2].split(":")[0]
    return ".".join(host.split(".")[-2:])


@pytest.mark.parametrize("others", [[("y", "web-a")], [("x", "web-b")]], ids=["same-scheme", "same-host"])
async def test_cookies_with_the_widest_domain_by_header_and_script_reach_no_other_origin(gateway, browser, others):
    context = await browser.new_context()
    page = await context.new_page()
    home = gateway.url("x", "web-a")
    site = registrable(home)
    await page.goto(gateway.url("x", "web-a", f"/set?site={site}"))
    await page.evaluate(f"document.cookie = 'js=1; path=/; domain={site}'")
    mine = await page.evaluate("document.cookie")
    assert "hdr=1" in mine and "js=1" in mine  # the cookies exist, with the site-wide Domain
    for host, scheme_label in others:
        await page.goto(gateway.url(host, scheme_label))
        assert await page.evaluate("document.cookie") == ""
    assert all(registrable(c["domain"].lstrip(".").join(["http://", "/"])) == site
               for c in await context.cookies())
    await context.close()


async def test_a_handler_can_not_merge_origins_through_document_domain(gateway, browser):
    page = await browser.new_page()
    await page.goto(gateway.url("x", "web-a", "/merge"))
    assert await page.evaluate("window.originAgentCluster") is True  # the gateway's ?1 wins over the handler's ?0
    other = gateway.url("y", "web-a", "/merge")
    result = await page.evaluate("""async (other) => {
        const f = document.createElement('iframe');
        f.src = other;
        await new Promise(ok => { f.onload = ok; document.body.appendChild(f); });
        try { document.domain = 'localhost'; } catch (e) {}
        try { return f.contentDocument === null ? 'blocked' : f.contentDocument.title; }
        catch (e) { return 'blocked'; }
    }""", other)
    assert result == "blocked"


SW_PAGE = """
from protoreg import Response

async def handleRequest(request):
    if request.url.path == "/sw.js":
        return Response("self.addEventListener('fetch', e => e.respondWith(new Response("
                        "'<title>old owner</title>answered by the old service worker', "
                        "{headers: {'Content-Type': 'text/html'}})));"
                        "self.addEventListener('activate', e => e.waitUntil(clients.claim()));",
                        headers={"Content-Type": "text/javascript"})
    return Response("<!doctype html><title>old owner</title><script src=/reg.js></script>" if request.url.path == "/"
                    else "navigator.serviceWorker.register('/sw.js')",
                    headers={"Content-Type": "text/html" if request.url.path == "/" else "text/javascript"})
"""
NEW_OWNER = """
from protoreg import Response

async def handleRequest(request):
    return Response("<!doctype html><title>new owner</title>", headers={"Content-Type": "text/html"})
"""


async def test_a_service_worker_of_an_uninstalled_extension_does_not_answer_for_the_new_owner(
        tmp_path, start_gateway, browser):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "old", "old@test", "web+sw", SW_PAGE))
    gateway = await start_gateway(reg)
    context = await browser.new_context()
    page = await context.new_page()
    old_url = gateway.url("h", "web-sw")
    await page.goto(old_url)
    await page.evaluate("navigator.serviceWorker.ready")
    await page.reload()
    assert "old service worker" in await page.content()  # the old owner's worker controls its origin
    reg.uninstall("old@test")
    reg.install(write_extension(tmp_path / "new", "new@test", "web+sw", NEW_OWNER))
    # The same custom URL, opened as the user would (the router form), is now another browser origin.
    await page.goto(f"{gateway.dashboard}?uri=web%2Bsw%3A%2F%2Fh%2F")
    assert await page.title() == "new owner"
    assert page.url != old_url
    assert await page.evaluate("navigator.serviceWorker.controller") is None
    await context.close()
