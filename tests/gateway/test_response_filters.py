"""Python response filters (issue 14): permission, order and composition, and failures that never hang."""

from __future__ import annotations

import pytest
from yarl import URL

from protoreg import Registry, filters
from protoreg.gateway import create_app
from protoreg.gateway.hosts import to_gateway_url
from protoreg.session import Session
from protoreg.testing import write_extension

PAGES = """
from protoreg import Response

async def handleRequest(request):
    if request.url.path == "/text":
        return Response("plain page", headers={"content-type": "text/plain"})
    return Response("<!doctype html><p>page " + request.url.path + "</p>", headers={"content-type": "text/html"})
"""
NOOP = "async def handleRequest(request):\n    return None\n"
UPPER = """
import asyncio, os

async def filterResponse(response, chunks):
    path = response.url.path
    if path == "/crash":
        os._exit(3)
    if path == "/slow":
        await asyncio.sleep(30)
    if path == "/raise":
        raise ValueError("bad filter")
    async for chunk in chunks:
        yield chunk.replace(b"page", b"FILTERED")
"""
SECOND = """
async def filterResponse(response, chunks):
    body = b"".join([c async for c in chunks])
    return body + b"<!-- second saw status " + str(response.status).encode() + b" -->"
"""


def _filter_ext(tmp_path, name, script, *, permissions=("responseFilter",)):
    return write_extension(
        tmp_path / name, scheme=f"web+{name}", script=NOOP, ext_id=f"{name}@test", permissions=list(permissions),
        host_permissions=["web+page://*/*"], files={"f.py": script},
        manifest_extra={"response_filters": [{"matches": ["web+page://*/*"], "script": "f.py",
                                              "types": ["text/html"]}]})


@pytest.fixture
async def client(tmp_path, aiohttp_client, monkeypatch):
    monkeypatch.setattr(filters, "FILTER_BUDGET", 1.0)
    reg = Registry()
    reg.install(write_extension(tmp_path / "pages", scheme="web+page", script=PAGES, ext_id="pages@test"))
    reg.install(_filter_ext(tmp_path, "upper", UPPER))
    reg.install(_filter_ext(tmp_path, "second", SECOND))
    reg.install(_filter_ext(tmp_path, "noperm", UPPER, permissions=()))
    session = Session(reg)
    client = await aiohttp_client(create_app(reg, session=session))
    client.protoreg_session = session
    yield client
    await session.close()


def _get(client, path):
    gw = to_gateway_url(URL(f"web+page://site{path}"), "localhost:8080", "pages@test")
    return client.get(path, headers={"Host": gw.raw_authority})


def _audit(client):
    return [(r.extension, r.decision, r.reason) for r in client.protoreg_session.audit.records()
            if r.capability == "response_filter"]


async def test_filters_compose_in_order_with_permission(client):
    resp = await _get(client, "/a")
    assert await resp.text() == "<!doctype html><p>FILTERED /a</p><!-- second saw status 200 -->"
    audit = _audit(client)
    assert ("noperm@test", "denied") in [(e, d) for e, d, _ in audit]
    assert any('lacks the "responseFilter" permission' in r for e, _, r in audit if e == "noperm@test")
    plain = await _get(client, "/text")  # types: ["text/html"] only
    assert await plain.text() == "plain page"


@pytest.mark.parametrize("path, why", [("/raise", "ValueError: bad filter"), ("/crash", "exited with code 3"),
                                       ("/slow", "no result within 1s")])
async def test_a_failing_filter_is_skipped_never_hangs_and_is_audited(client, path, why):
    resp = await _get(client, path)
    assert resp.status == 200
    # Only the failing filter is skipped: the next one still runs, on the unfiltered body.
    assert await resp.text() == f"<!doctype html><p>page {path}</p><!-- second saw status 200 -->"
    failed = [r for e, _, r in _audit(client) if e == "upper@test"]
    assert failed and failed[-1].startswith("failed:") and why in failed[-1], failed
    again = await _get(client, "/b")  # a crashed filter's worker is replaced on the next response
    assert "FILTERED /b" in await again.text()



COUNTER = """
from protoreg import runtime

async def filterResponse(response, chunks):
    body = b"".join([c async for c in chunks])
    n = int(await runtime.storage.get("n") or b"0") + 1
    await runtime.storage.set("n", str(n))
    return body + f"<!-- {n} -->".encode()
"""


async def test_a_filters_capability_calls_act_for_the_filtered_origin(tmp_path, aiohttp_client):
    reg = Registry()
    reg.install(write_extension(tmp_path / "pages", scheme="web+page", script=PAGES, ext_id="pages@test"))
    reg.install(_filter_ext(tmp_path, "counter", COUNTER, permissions=("responseFilter", "storage")))
    async with Session(reg) as session:
        client = await aiohttp_client(create_app(reg, session=session))
        for host, expect in (("a", "1"), ("a", "2"), ("b", "1")):
            gw = to_gateway_url(URL(f"web+page://{host}/"), "localhost:8080", "pages@test")
            resp = await client.get("/", headers={"Host": gw.raw_authority})
            assert (await resp.text()).endswith(f"<!-- {expect} -->")
        origins = {r.origin for r in session.audit.records() if r.capability.startswith("storage.")}
        assert origins == {"web+page://a", "web+page://b"}
