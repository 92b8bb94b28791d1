"""How a tester checks an extension's origin rules with protoreg's pytest plugin.

    pytest examples/test_my_extension.py
"""

from __future__ import annotations

from pathlib import Path

from protoreg.testing import (
    assert_cross_origin_blocked,
    assert_csp_enforced,
    assert_secure_context,
    assert_separate_origins,
)

DEMO = Path(__file__).resolve().parent / "demo-site"


async def test_each_host_is_its_own_origin(protoreg_registry):
    protoreg_registry.install(DEMO)
    assert_separate_origins(protoreg_registry, "web+demo://alice/", "web+demo://bob/")


async def test_other_hosts_cannot_read_the_site(protoreg_registry, protoreg_session):
    protoreg_registry.install(DEMO)
    await assert_cross_origin_blocked(protoreg_session, "web+demo://mallory", "web+demo://alice/")


async def test_pages_cannot_run_inline_scripts(protoreg_registry, protoreg_session):
    protoreg_registry.install(DEMO)
    page = await protoreg_session.fetch("web+demo://alice/")
    assert_csp_enforced(page, "script-src", forbids="'unsafe-inline'")


def test_the_site_is_a_secure_context(protoreg_registry):
    protoreg_registry.install(DEMO)
    assert_secure_context(protoreg_registry, "web+demo://alice/")


async def test_a_handler_written_inline(install_extension, protoreg_session):
    install_extension("web+note", """
        from protoreg import Response
        async def handleRequest(request):
            return Response("note " + request.url.host)
    """)
    resp = await protoreg_session.fetch("web+note://today/")
    assert await resp.text() == "note today"
