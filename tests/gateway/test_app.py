"""The gateway over HTTP: routing, label inlining, redirects, error pages, HEAD, ranges, streaming, bad input."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

import protoreg
from protoreg.gateway import create_app
from protoreg.gateway.hosts import encode_host_label, encode_scheme_label, site_label

SITE = """
from protoreg import Response

async def handleRequest(request):
    path = request.url.path
    if path == "/":
        return Response("<!doctype html><h1>home of " + request.url.host + "</h1>",
                        headers={"Content-Type": "text/html"})
    if path == "/echo":
        body = await request.read()
        return Response.json({"method": request.method, "url": str(request.url), "origin": request.origin,
                              "body": body.decode()})
    if path == "/range":
        data = b"0123456789"
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            start, _, end = rng[6:].partition("-")
            return Response(data[int(start):int(end) + 1], 206,
                            {"Content-Range": f"bytes {start}-{end}/10", "Content-Length": str(int(end) - int(start) + 1)})
        return Response(data, headers={"Content-Length": "10"})
    if path == "/stream":
        async def gen():
            for i in range(100):
                yield b"x" * 10000
        return Response(gen())
    if path == "/go-other":
        return Response.redirect("web+site://other.example/landing")
    if path == "/go-relative":
        return Response.redirect("./landing")
    if path == "/cors":
        return Response("shared", headers={"Access-Control-Allow-Origin": request.headers.get("Origin", "")})
    if path == "/boom":
        raise RuntimeError("kaboom <script>alert(1)</script>")
    return Response.error(404)
"""


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "handler.py").write_text(textwrap.dedent(SITE))
    (root / "icon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "manifest.json").write_text(json.dumps({
        "name": "Site", "version": "1.0", "browser_specific_settings": {"gecko": {"id": "site@test"}},
        "protocol_handlers": [{"protocol": "web+site", "name": "Site", "uriHandlerScript": "handler.py",
                               "uriIcon": "icon.svg", "uriIsTrustworthy": True}],
        "content_security_policy": {"protocol_pages": "script-src 'self'"}}))
    reg = protoreg.Registry()
    reg.install(root)
    return reg


@pytest.fixture
async def client(aiohttp_client, registry):
    return await aiohttp_client(create_app(registry))


def authority(custom_host: str, scheme: str = "web+site", owner: str = "site@test", port: int = 8080) -> str:
    """The gateway authority of ``scheme://custom_host`` served by ``owner``."""
    return (f"{encode_host_label(custom_host)}.{encode_scheme_label(scheme)}."
            f"{site_label(owner, scheme, custom_host)}.localhost:{port}")


def host(custom_host: str, scheme: str = "web+site", owner: str = "site@test") -> dict[str, str]:
    return {"Host": authority(custom_host, scheme, owner)}


async def test_subdomain_serves_the_custom_url_with_policy_headers(client):
    resp = await client.get("/", headers=host("a"))
    assert resp.status == 200
    assert "home of a" in await resp.text()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers.getall("Content-Security-Policy") == [
        "object-src 'none'; base-uri 'self'; frame-ancestors 'self'", "script-src 'self'"]


async def test_multi_label_hosts_are_encoded_and_decoded(client):
    site = site_label("site@test", "web+site", "docs.example-site.org")
    resp = await client.get("/echo?x=1", headers={"Host": f"i--docs-2eexample-2dsite-2eorg.web-site.{site}.localhost"})
    assert (await resp.json())["url"] == "web+site://docs.example-site.org/echo?x=1"


async def test_the_short_form_without_a_site_label_redirects_to_the_full_origin(client):
    resp = await client.get("/p?q=1", headers={"Host": "a.web-site.localhost:8080"}, allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == f"http://{authority('a')}/p?q=1"
    resp = await client.post("/echo", headers={"Host": "a.web-site.localhost:8080"}, allow_redirects=False)
    assert resp.status == 308


async def test_an_origin_whose_site_label_names_another_owner_serves_nothing_and_clears_its_site_data(client):
    resp = await client.get("/", headers=host("a", owner="previous-owner@test"))
    assert resp.status == 404 and "no installed extension" in await resp.text()
    assert resp.headers["Clear-Site-Data"] == '"cache", "cookies", "storage", "executionContexts"'


async def test_request_bodies_and_methods_pass_through(client):
    resp = await client.post("/echo", data=b"payload", headers=host("a"))
    data = await resp.json()
    assert (data["method"], data["body"]) == ("POST", "payload")


async def test_browser_origin_is_translated_for_the_handler_and_back(client):
    resp = await client.get("/cors", headers={**host("b"), "Origin": f"http://{authority('a')}"})
    assert resp.headers["Access-Control-Allow-Origin"] == f"http://{authority('a')}"
    resp = await client.post("/echo", headers={**host("b"), "Origin": f"http://{authority('a')}"})
    assert (await resp.json())["origin"] == "web+site://a"


@pytest.mark.parametrize("foreign", [
    "https://{a}",                                        # another scheme
    "http://{a_other_port}",                              # another port
    "http://{a_dot}",                                     # a trailing dot
    "http://a.web-site.localhost:8080",                   # the short form serves nothing
    "http://{a_other_owner}",                             # a site label of another owner
])
async def test_other_browser_origins_are_never_translated_to_a_custom_origin(client, foreign):
    origin = foreign.format(a=authority("a"), a_other_port=authority("a", port=8081),
                            a_other_owner=authority("a", owner="evil@test"),
                            a_dot=authority("a").replace(".localhost:", ".localhost.:"))
    resp = await client.post("/echo", headers={**host("b"), "Origin": origin})
    assert (await resp.json())["origin"] not in ("web+site://a", "web+site://b")


async def test_handlers_can_not_opt_out_of_origin_keyed_agent_clusters(client):
    resp = await client.get("/", headers=host("a"))
    assert resp.headers["Origin-Agent-Cluster"] == "?1"


async def test_redirects_to_custom_urls_become_gateway_urls(client):
    resp = await client.get("/go-other", headers=host("a"), allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == f"http://{authority('other.example')}/landing"
    resp = await client.get("/go-relative", headers=host("a"), allow_redirects=False)
    assert resp.headers["Location"] == "./landing"


async def test_head_and_ranges_pass_through(client):
    resp = await client.head("/range", headers=host("a"))
    assert resp.status == 200 and resp.headers["Content-Length"] == "10" and await resp.read() == b""
    resp = await client.get("/range", headers={**host("a"), "Range": "bytes=2-5"})
    assert resp.status == 206 and resp.headers["Content-Range"] == "bytes 2-5/10"
    assert await resp.read() == b"2345"


async def test_streamed_bodies_arrive_whole(client):
    resp = await client.get("/stream", headers=host("a"))
    assert len(await resp.read()) == 1_000_000


async def test_handler_fault_shows_an_escaped_error_page_and_the_gateway_keeps_serving(client):
    resp = await client.get("/boom", headers=host("a"))
    text = await resp.text()
    assert resp.status == 500
    assert "site@test" in text and "kaboom" in text and "handler.py" in text
    assert "<script>alert(1)</script>" not in text and "Traceback" not in text
    assert (await client.get("/", headers=host("a"))).status == 200


async def test_label_over_63_characters_is_a_400_with_an_explanation(client):
    resp = await client.get("/?uri=web%2Bsite%3A%2F%2F" + "a" * 40 + "." + "b" * 40 + "%2F", headers={"Host": "localhost:8080"},
                            allow_redirects=False)
    assert resp.status == 400
    assert "63-character limit" in await resp.text()


async def test_path_form_and_uri_form_redirect_to_the_subdomain(client):
    resp = await client.get("/web+site/a.b/x?y=1", headers={"Host": "localhost:8080"}, allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == f"http://{authority('a.b')}/x?y=1"
    resp = await client.get("/?uri=web%2Bsite%3A%2F%2Fhost%2Fp", headers={"Host": "localhost:8080"},
                            allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == f"http://{authority('host')}/p"


async def test_unknown_scheme_lists_the_registered_ones(client):
    resp = await client.get("/", headers={"Host": "a.ipns.localhost:8080"})
    assert resp.status == 404
    assert "web+site" in await resp.text()


@pytest.mark.parametrize("headers", [{"Host": "evil.example"}, {"Host": "a.b.c.localhost"},
                                     {"Host": "a..web-site.localhost"}, {"Host": "a.web-site.localhost:99999x"}])
async def test_bad_host_headers_get_a_400(client, headers):
    resp = await client.get("/", headers=headers)
    assert resp.status in (400, 404)
    assert (await client.get("/", headers=host("a"))).status == 200


async def raw_status(client, path: str, host_header: str) -> int:
    """Send a request line byte for byte (HTTP clients normalise dot segments away before sending)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


@pytest.mark.parametrize("path", ["/a/%2e%2e/b", "/a/%2E./b", "/a/../b", "/..%5cetc", "/a%00", "/a\\..\\b"])
async def test_path_traversal_attempts_get_a_400(client, path):
    assert await raw_status(client, path, authority("a")) == 400
    assert await raw_status(client, "/", authority("a")) == 200


async def test_oversized_headers_get_a_400_and_the_gateway_keeps_serving(client):
    resp = await client.get("/", headers={**host("a"), "X-Big": "x" * 20000})
    assert resp.status == 400
    assert (await client.get("/", headers=host("a"))).status == 200


async def test_dashboard_lists_extensions_with_a_strict_csp_and_no_cors(client):
    await client.get("/", headers=host("a"))  # start a worker so it shows up
    resp = await client.get("/", headers={"Host": "localhost:8080", "Origin": f"http://{authority('a')}"})
    text = await resp.text()
    assert resp.status == 200
    for needle in ("site@test", "web+site", "protoreg: <span class=ok>trustworthy</span>",
                   "/_protoreg/icon/site@test/web+site", "Workers", "Sandbox layers", "Audit log",
                   "script-src &#x27;self&#x27;"):
        assert needle in text, needle
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    icon = await client.get("/_protoreg/icon/site@test/web+site", headers={"Host": "localhost:8080"})
    assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"


async def test_an_icon_that_is_not_an_image_is_never_served_on_the_dashboard_origin(aiohttp_client, tmp_path):
    root = tmp_path / "html-icon"
    root.mkdir()
    (root / "handler.py").write_text(textwrap.dedent(SITE))
    (root / "icon.html").write_text("<script>parent.grants.revoke()</script>")
    (root / "manifest.json").write_text(json.dumps({
        "name": "Icon", "version": "1.0", "browser_specific_settings": {"gecko": {"id": "icon@test"}},
        "protocol_handlers": [{"protocol": "web+icon", "name": "Icon", "uriHandlerScript": "handler.py",
                               "uriIcon": "icon.html"}]}))
    reg = protoreg.Registry()
    reg.install(root)
    client = await aiohttp_client(create_app(reg))
    resp = await client.get("/_protoreg/icon/icon@test/web+icon", headers={"Host": "localhost:8080"})
    assert resp.status == 404 and "not an image file" in await resp.text()
    assert "<script>parent" not in await resp.text()


# -- pages a person reads: error pages, the dashboard's trust facts, times and icon ----------------------------------
async def test_error_pages_say_what_to_try_and_link_back_to_the_site_and_the_dashboard(client):
    resp = await client.get("/", headers={"Host": "a.web-nope.localhost:8080"})
    text = await resp.text()
    assert resp.status == 404 and "What to try" in text
    assert '<a href="http://localhost:8080/">' in text and "about:protoreg-dashboard" not in text
    assert text.count("dashboard</a>") == 1  # the page's own dashboard link, not a second default one
    page = await client.get("/", headers={"Host": "web-site.localhost:8080"})  # a scheme but no host
    text = await page.text()
    assert page.status == 400 and "What to try" in text and '<a href="/">' in text
    assert '<a href="http://localhost:8080/">the gateway dashboard' in text
    assert 'rel=icon type="image/svg+xml" href="data:image/svg+xml,' in text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "<script" not in text


def test_error_page_escapes_everything_and_keeps_a_usable_link_without_a_request():
    from protoreg.gateway.pages import error_page

    page = error_page(502, "<b>boom</b>", extension="<x>", url="web+a://h/<p>")
    assert "&lt;b&gt;boom&lt;/b&gt;" in page.text and "&lt;x&gt;" in page.text and "web+a://h/&lt;p&gt;" in page.text
    assert "Reload to try again" in page.text and "HTTP status 502 (Bad Gateway)" in page.text


async def test_dashboard_shows_both_trust_facts_readable_utc_audit_times_and_a_favicon(client):
    from protoreg.gateway.app import SESSION

    session = client.server.app[SESSION]
    await client.get("/", headers=host("a"))
    session.audit.record("site@test", "web+site://a", "fetch", "https://example.org/", False, "not granted")
    text = await (await client.get("/", headers={"Host": "localhost:8080"})).text()
    assert '<span title="uriIsTrustworthy: true">protoreg: <span class=ok>trustworthy</span></span>' in text
    assert "<span class=note>browser: secure context</span>" in text
    assert "every <code>*.localhost</code> origin as potentially trustworthy" in text
    import re

    assert re.search(r"<td>20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC<br>.*?</td><td><code>site@test</code>", text), \
        text[-1500:]
    assert '<link rel=icon type="image/svg+xml" href="/_protoreg/favicon.svg">' in text
    icon = await client.get("/_protoreg/favicon.svg", headers={"Host": "localhost:8080"})
    assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert (await icon.text()).startswith("<svg") and "sandbox" in icon.headers["Content-Security-Policy"]


async def test_hosts_yarl_can_not_idna_decode_still_get_a_gateway_origin(client):
    resp = await client.get("/?uri=web%2Bsite%3A%2F%2Fa.b.c.xn--pokxncvks%2F", headers={"Host": "localhost:8080"},
                            allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"].startswith("http://i--a-2eb-2ec-2exn-2d-2dpokxncvks.")
    moved = resp.headers["Location"].split("/")[2]
    page = await client.get("/echo", headers={"Host": moved})
    assert page.status == 200 and (await page.json())["url"] == "web+site://a.b.c.xn--pokxncvks/echo"
