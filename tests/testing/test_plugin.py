"""The pytest plugin, exercised with pytester: fixtures work and failure messages explain the broken rule."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

HEADER = '''
import pytest
from protoreg.testing import (assert_cross_origin_blocked, assert_cross_origin_readable, assert_csp_enforced,
                              assert_same_origin, assert_separate_origins, assert_secure_context)

SITE = """
from protoreg import Response
async def handleRequest(request):
    if request.url.path == "/open":
        return Response("hi", headers={"Access-Control-Allow-Origin": "*"})
    return Response("<script>x()</script>", headers={"Content-Type": "text/html"})
"""
'''


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=HEADER + body)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)


def test_fixtures_install_fetch_and_serve(pytester):
    result = run(pytester, '''
async def test_session(install_extension, protoreg_session, protoreg_registry):
    install_extension("web+a", SITE, trustworthy=True)
    install_extension("web+b", SITE, csp="script-src 'self'")
    resp = await assert_cross_origin_readable(protoreg_session, "web+a://x", "web+b://y/open")
    assert await resp.text() == "hi"
    await assert_cross_origin_blocked(protoreg_session, "web+a://x", "web+b://y/closed")
    assert_same_origin(protoreg_registry, "web+a://x/1", "web+a://x/2")
    assert_separate_origins(protoreg_registry, "web+a://x/", "web+a://y/")
    assert_secure_context(protoreg_registry, "web+a://x/")
    page = await protoreg_session.fetch("web+b://y/")
    assert_csp_enforced(page, "script-src", forbids="'unsafe-inline'")

async def test_gateway(install_extension, protoreg_gateway):
    import aiohttp
    install_extension("web+a", SITE)
    url = protoreg_gateway.url("site.example", "web+a")
    assert url.startswith("http://i--site-2eexample.web-a.s") and ".localhost:" in url
    async with aiohttp.ClientSession() as c:
        async with c.get(f"http://127.0.0.1:{protoreg_gateway.port}/", headers={"Host": url.split("/")[2]}) as r:
            assert r.status == 200 and "<script>" in await r.text()
''')
    result.assert_outcomes(passed=2)


def test_failure_messages_explain_the_rule(pytester):
    result = run(pytester, '''
async def test_readable_but_expected_blocked(install_extension, protoreg_session):
    install_extension("web+b", SITE)
    await assert_cross_origin_blocked(protoreg_session, "web+a://x", "web+b://y/open")

def test_not_same_origin(protoreg_registry, install_extension):
    install_extension("web+a", SITE)
    assert_same_origin(protoreg_registry, "web+a://x/", "web+a://y/")

async def test_inline_allowed(install_extension, protoreg_session):
    install_extension("web+b", SITE)
    page = await protoreg_session.fetch("web+b://y/")
    assert_csp_enforced(page, "script-src", forbids="'unsafe-inline'")

def test_not_secure(protoreg_registry, install_extension):
    install_extension("web+a", SITE)
    assert_secure_context(protoreg_registry, "web+a://x/")
''')
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert "to be blocked by CORS, but it was readable (status 200, type cors)" in out
    assert "their origins are web+a://x and web+a://y: scheme and host must both match" in out
    assert "expected inline script-src to be blocked" in out
    assert '"uriIsTrustworthy": true' in out
