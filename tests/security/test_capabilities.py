"""Capabilities through the broker: fetch only to host_permissions (also across redirects), SSRF refusal, storage
partitioned per origin and removed on uninstall, data_dir, audit records, and helpful PermissionDenied errors."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

import protoreg
from protoreg.testing import write_extension

HANDLER = """
import json, os
from protoreg import Response, runtime
from protoreg.errors import PermissionDenied

async def handleRequest(request):
    q = dict(request.url.query)
    try:
        if request.url.path == "/fetch":
            r = await runtime.fetch(q["url"])
            return Response.json({"status": r.status, "body": r.text(), "url": r.url})
        if request.url.path == "/stream":
            import hashlib
            r = await runtime.fetch(q["url"], stream=True)
            h, n, pieces = hashlib.sha256(), 0, 0
            async for chunk in r.iter_chunks():
                h.update(chunk)
                n += len(chunk)
                pieces += 1
                if "stop" in q and n >= int(q["stop"]):
                    await r.aclose()
                    break
            return Response.json({"status": r.status, "sha": h.hexdigest(), "n": n, "pieces": pieces})
        if request.url.path == "/set":
            await runtime.storage.set(q["key"], q["value"])
            return Response.json({"ok": True})
        if request.url.path == "/get":
            v = await runtime.storage.get(q["key"])
            return Response.json({"value": v.decode() if v is not None else None,
                                  "keys": await runtime.storage.keys()})
        if request.url.path == "/data":
            d = runtime.data_dir()
            (d / "blocks.bin").write_bytes(b"block")
            return Response.json({"read": (d / "blocks.bin").read_text(), "dir": str(d)})
    except PermissionDenied as e:
        return Response.json({"denied": str(e)}, status=403)
    return Response.error(404)
"""


@pytest.fixture
async def upstream():
    hits: list[str] = []

    async def ok(request):
        hits.append(request.path)
        return web.Response(text="upstream data")

    async def bounce(request):
        hits.append(request.path)
        raise web.HTTPFound(request.query["to"])

    async def big(request):
        hits.append(request.path)
        out = web.StreamResponse()
        await out.prepare(request)
        for i in range(40):  # 40 MiB: over the buffered limit
            await out.write(bytes([i]) * (1 << 20))
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/ok", ok)
    app.router.add_get("/bounce", bounce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port, hits
    await runner.cleanup()


def install(reg, tmp_path, name, **kw):
    return reg.install(write_extension(tmp_path / name, scheme=f"web+{name}", script=HANDLER, ext_id=f"{name}@test",
                                       **kw))


async def get(session, url):
    resp = await session.fetch(url)
    return resp.status, json.loads(await resp.text())


async def test_fetch_to_a_granted_host_works_and_is_audited(tmp_path, upstream):
    port, hits = upstream
    reg = protoreg.Registry()
    install(reg, tmp_path, "granted", host_permissions=["http://127.0.0.1/*"])
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+granted://site/fetch?url=http://127.0.0.1:{port}/ok")
        assert (status, out["body"]) == (200, "upstream data")
        (rec,) = s.audit.records(capability="fetch")
        assert (rec.extension, rec.origin, rec.decision) == ("granted@test", "web+granted://site", "allowed")


async def test_fetch_to_a_host_not_granted_is_denied_with_the_fix(tmp_path, upstream):
    port, hits = upstream
    reg = protoreg.Registry()
    install(reg, tmp_path, "demo", host_permissions=["https://api.example.org/*"])
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+demo://x/fetch?url=http://127.0.0.1:{port}/ok")
        assert status == 403
        assert out["denied"] == (
            f"handler for web+demo (extension demo@test) tried to fetch http://127.0.0.1:{port}/ok: "
            'not allowed by host_permissions in manifest.json. Add "http://127.0.0.1/*" to host_permissions to '
            "allow it.")
        assert hits == []
        assert s.audit.records(decision="denied")[0].target == f"http://127.0.0.1:{port}/ok"


async def test_a_grant_for_one_port_does_not_reach_the_hosts_other_ports(tmp_path, upstream):
    """host_permissions naming a port grant that port only (before, the port was parsed and ignored, so a grant for
    one local service reached every service on the host); checked on the server: the request never arrived."""
    port, hits = upstream
    reg = protoreg.Registry()
    other = port + 1 if port < 65535 else port - 1
    install(reg, tmp_path, "oneport", host_permissions=[f"http://127.0.0.1:{other}/*"])
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+oneport://x/fetch?url=http://127.0.0.1:{port}/ok")
        assert status == 403 and "not allowed by host_permissions" in out["denied"]
        assert hits == []
    reg = protoreg.Registry()
    install(reg, tmp_path, "rightport", host_permissions=[f"http://127.0.0.1:{port}/*"])
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+rightport://x/fetch?url=http://127.0.0.1:{port}/ok")
        assert (status, out["body"]) == (200, "upstream data")
        assert hits == ["/ok"]


async def test_a_redirect_from_a_granted_host_to_another_host_is_refused(tmp_path, upstream):
    port, hits = upstream
    reg = protoreg.Registry()
    install(reg, tmp_path, "hop", host_permissions=["http://127.0.0.1/*"])
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+hop://x/fetch?url=http://127.0.0.1:{port}/bounce%3Fto%3Dhttp://localhost:{port}/ok")
        assert status == 403 and "redirected from a granted URL" in out["denied"]
        assert hits == ["/bounce"]


async def test_loopback_is_refused_by_default_even_when_granted(tmp_path, upstream):
    port, hits = upstream
    reg = protoreg.Registry()
    install(reg, tmp_path, "ssrf", host_permissions=["http://127.0.0.1/*"])
    async with protoreg.Session(reg) as s:
        status, out = await get(s, f"web+ssrf://x/fetch?url=http://127.0.0.1:{port}/ok")
        assert status == 403 and "a loopback address: refused to prevent server-side request forgery" in out["denied"]
        assert hits == []


async def test_storage_needs_the_permission(tmp_path):
    reg = protoreg.Registry()
    install(reg, tmp_path, "nostore")
    async with protoreg.Session(reg) as s:
        status, out = await get(s, "web+nostore://x/set?key=k&value=v")
        assert status == 403 and 'lacks the "storage" permission in manifest.json. Add "storage"' in out["denied"]
        status, out = await get(s, "web+nostore://x/data")
        assert status == 403 and 'add "storage" to "permissions"' in out["denied"]


async def test_storage_is_partitioned_per_origin_and_removed_on_uninstall(tmp_path):
    reg = protoreg.Registry()
    install(reg, tmp_path, "store", permissions=["storage"])
    async with protoreg.Session(reg) as s:
        assert (await get(s, "web+store://alice/set?key=secret&value=alice-only"))[0] == 200
        _, mine = await get(s, "web+store://alice/get?key=secret")
        _, theirs = await get(s, "web+store://mallory/get?key=secret")
        assert mine == {"value": "alice-only", "keys": ["secret"]}
        assert theirs == {"value": None, "keys": []}
        reg.uninstall("store@test")
        assert s.broker.storage.keys("store@test", "web+store://alice") == []


async def test_data_dir_is_writable_by_its_extension_only(tmp_path):
    reg = protoreg.Registry()
    install(reg, tmp_path, "blocks", permissions=["storage"])
    install(reg, tmp_path, "snoop", permissions=["storage"])
    async with protoreg.Session(reg) as s:
        status, out = await get(s, "web+blocks://x/data")
        assert (status, out["read"]) == (200, "block")
        attacker_view = await s.fetch(f"web+snoop://x/fetch?url=file://{out['dir']}/blocks.bin")
        assert attacker_view.status == 403


async def test_an_uncaught_denial_names_its_type_once(tmp_path):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "raw", scheme="web+raw", ext_id="raw@test", script=(
        "from protoreg import runtime\n"
        "async def handleRequest(request):\n"
        "    await runtime.fetch('https://not-granted.example/')\n")))
    async with protoreg.Session(reg) as s:
        resp = await s.fetch("web+raw://x/")
        message = str(resp.error)
    assert resp.status >= 500 and "tried to fetch https://not-granted.example/" in message
    assert message.count("PermissionDenied") == 1, message


async def test_streamed_fetch_bodies_of_any_size_with_bounded_pieces(tmp_path, upstream):
    import hashlib

    port, hits = upstream
    reg = protoreg.Registry()
    install(reg, tmp_path, "streams", host_permissions=["http://127.0.0.1/*"])
    expect = hashlib.sha256(b"".join(bytes([i]) * (1 << 20) for i in range(40))).hexdigest()
    async with protoreg.Session(reg, allow_private_networks=True) as s:
        status, out = await get(s, f"web+streams://x/stream?url=http://127.0.0.1:{port}/big")
        assert (status, out["status"], out["n"], out["sha"]) == (200, 200, 40 << 20, expect)
        assert out["pieces"] >= 40  # pulled in pieces of at most 1 MiB
        status, buffered = await get(s, f"web+streams://x/fetch?url=http://127.0.0.1:{port}/big")
        assert status == 500 or "larger than" in json.dumps(buffered)
        # closing early frees the fetch slot: many early-closed streams in a row never hit the concurrency limit
        for _ in range(20):
            status, out = await get(s, f"web+streams://x/stream?url=http://127.0.0.1:{port}/big&stop=1")
            assert status == 200 and out["n"] >= 1
        assert s.broker._streams == {} and s.broker._fetching == {}
