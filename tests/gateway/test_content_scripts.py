"""Content scripts on custom schemes in the gateway (issue 14): matching, host permission, the reserved path on
the page's own origin, and the narrowest CSP change."""

from __future__ import annotations

import base64
import hashlib

import pytest
from yarl import URL

from protoreg import Registry
from protoreg.content import PREFIX, Injection, adjust_csp, inject_html, pattern_matches
from protoreg.gateway import create_app
from protoreg.gateway.hosts import to_gateway_url
from protoreg.policy import csp
from protoreg.session import Session
from protoreg.testing import write_extension

PAGES = """
from protoreg import Response

async def handleRequest(request):
    path = request.url.path
    page = "<!doctype html><html><head><title>t</title></head><body><p id=p>page</p>" \\
           "<script>document.title = 'inline ran'</script></body></html>"
    if path.startswith("/strict"):
        return Response(page, headers={"content-type": "text/html", "content-security-policy": "script-src 'none'"})
    if path.startswith("/text"):
        return Response("not html", headers={"content-type": "text/plain"})
    return Response(page, headers={"content-type": "text/html"})
"""
NOOP = "async def handleRequest(request):\n    return None\n"
JS = "document.documentElement.dataset.cs = 'ran';\n"
CSS = "p { color: rgb(1, 2, 3); }\n"


def _sri(data: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(data.encode()).digest()).decode()


@pytest.fixture
def registry(tmp_path):
    reg = Registry()
    reg.install(write_extension(tmp_path / "pages", scheme="web+page", script=PAGES, ext_id="pages@test"))
    reg.install(write_extension(
        tmp_path / "cs", scheme="web+cs", script=NOOP, ext_id="cs@test", host_permissions=["web+page://*/*"],
        files={"content.js": JS, "content.css": CSS},
        manifest_extra={"content_scripts": [{"matches": ["web+page://*/*"], "exclude_matches": ["web+page://*/skip/*"],
                                             "js": ["content.js"], "css": ["content.css"]}]}))
    reg.install(write_extension(
        tmp_path / "nogrant", scheme="web+ng", script=NOOP, ext_id="nogrant@test",
        files={"n.js": "x = 1;\n"}, manifest_extra={"content_scripts": [{"matches": ["<all_urls>"], "js": ["n.js"]}]}))
    return reg


@pytest.fixture
async def client(registry, aiohttp_client):
    session = Session(registry)
    client = await aiohttp_client(create_app(registry, session=session))
    client.session_obj = session
    yield client
    await session.close()


def _host(url: str) -> dict[str, str]:
    gw = to_gateway_url(URL(url), "localhost:8080", "pages@test")
    return {"Host": gw.raw_authority}


async def test_matching_html_gets_the_files_from_its_own_origin(client):
    resp = await client.get("/a", headers=_host("web+page://site/a"))
    body = await resp.text()
    js = f'<script src="{PREFIX}cs@test/content.js" data-protoreg-content="cs@test" integrity="{_sri(JS)}" defer>'
    assert js in body and body.index(js) < body.index("</body>")
    assert f'<link rel="stylesheet" href="{PREFIX}cs@test/content.css"' in body
    assert "n.js" not in body  # nogrant@test matches <all_urls> but holds no host permission
    served = await client.get(f"{PREFIX}cs@test/content.js", headers=_host("web+page://site/a"))
    assert served.status == 200 and await served.text() == JS
    assert served.headers["Content-Type"].startswith("text/javascript")
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    audit = {(r.extension, r.capability, r.decision) for r in client.session_obj.audit.records()}
    assert ("cs@test", "content_script", "allowed") in audit and ("nogrant@test", "content_script", "denied") in audit


async def test_pages_it_does_not_match_are_left_alone(client):
    for path in ("/skip/x", "/text"):
        resp = await client.get(path, headers=_host(f"web+page://site{path}"))
        assert "protoreg-content" not in await resp.text()
    # The reserved path serves only files listed for pages of that origin, never another file of the bundle.
    for path in ("cs@test/handler.py", "cs@test/manifest.json", "nobody@test/content.js", "nogrant@test/n.js"):
        miss = await client.get(PREFIX + path, headers=_host("web+page://site/"))
        assert miss.status == 404, path


async def test_the_dashboard_never_gets_content_scripts(client):
    page = await (await client.get("/", headers={"Host": "localhost:8080"})).text()
    assert "protoreg-content" not in page
    assert "content scripts content.js, content.css</span></td><td>on web+page://*/*" in page  # listed, not run
    miss = await client.get(f"{PREFIX}cs@test/content.js", headers={"Host": "localhost:8080"})
    assert miss.status == 404


async def test_a_strict_csp_admits_the_file_by_hash_and_nothing_else(client):
    resp = await client.get("/strict", headers=_host("web+page://site/strict"))
    policies = csp.parse_response_policies(resp.headers.items())
    handler_policy = next(p for p in policies if "script-src" in p.directives)
    assert handler_policy.directives["script-src"] == ["'none'"]  # unchanged
    assert handler_policy.directives["script-src-elem"] == [f"'{_sri(JS)}'"]  # exactly the file
    assert not csp.allows_inline(policies)  # the page's inline script stays blocked


def test_adjust_csp_keeps_unsafe_inline_working_and_leaves_permissive_policies_alone():
    inj = [Injection("e", "a.js", PREFIX + "e/a.js", "js", "sha256-AAAA", "document_idle")]
    origin = "http://x.web-page.s1.localhost:8080"
    inline = adjust_csp([("Content-Security-Policy", "script-src 'unsafe-inline'")], inj, origin)
    policy = csp.parse_response_policies(inline)[0]
    assert policy.directives["script-src-elem"] == ["'unsafe-inline'", origin + PREFIX + "e/a.js"]
    assert csp.allows_inline([policy])  # a hash would have turned inline scripts off: a URL source doesn't
    same = [("Content-Security-Policy", "script-src 'self'")]
    assert adjust_csp(same, inj, origin) == same
    css = [Injection("e", "a.css", PREFIX + "e/a.css", "css", "sha256-AAAA", "document_idle")]
    strict = csp.parse_response_policies(adjust_csp([("Content-Security-Policy", "default-src 'none'")], css, origin))
    assert strict[0].directives == {"default-src": ["'none'"], "style-src-elem": [origin + PREFIX + "e/a.css"]}


def test_inject_html_places_document_start_in_head_and_others_before_body_end():
    start = Injection("e", "s.js", "/s.js", "js", "sha256-A", "document_start")
    end = Injection("e", "e.js", "/e.js", "js", "sha256-B", "document_end")
    out = inject_html(b"<html><HEAD lang=x><title>t</title></head><body>x</BODY></html>", [start, end]).decode()
    assert out.index("/s.js") < out.index("<title>") and out.index("/e.js") < out.index("</BODY>")
    assert "defer" not in out
    assert inject_html(b"bare", [end]).decode().startswith("bare<script")


def test_all_urls_means_every_registered_scheme():
    assert pattern_matches("<all_urls>", URL("ipfs://bafy/x"), {"ipfs"})
    assert not pattern_matches("<all_urls>", URL("web+other://a/"), {"ipfs"})
    assert pattern_matches("web+foo://example/*", URL("web+foo://example/a/b"), {"web+foo"})
    assert not pattern_matches("web+foo://example/*", URL("web+foo://other/a"), {"web+foo"})


def test_check_lists_content_scripts_and_filters_and_what_they_lack(tmp_path, capsys):
    from protoreg.cli import main

    root = write_extension(
        tmp_path / "x", scheme="web+x", script=NOOP, ext_id="x@test", host_permissions=["ipfs://*/*"],
        files={"a.js": "1;\n", "f.py": "async def filterResponse(r, c):\n    return b''\n"},
        manifest_extra={"content_scripts": [{"matches": ["ipfs://*/*", "web+foo://example/*"], "js": ["a.js"]}],
                        "response_filters": [{"matches": ["ipfs://*/*"], "script": "f.py"}]})
    assert main(["check", str(root)]) == 1
    out, err = capsys.readouterr()
    assert "content script 0: ipfs://*/*, web+foo://example/* -> a.js (document_idle)" in out
    assert "response filter 0: ipfs://*/* -> f.py" in out
    assert 'content_scripts[0] matches web+foo://example/* but no host permission covers it' in err
    assert "ipfs://*/* but no host" not in err
    assert 'response_filters[0] needs the "responseFilter" permission' in err
