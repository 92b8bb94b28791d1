"""A worker can't make the parent (which hosts every extension and the embedding app) hold unbounded memory,
burn its CPU, or act beyond per-extension limits. A worker past a bound is killed with a logged reason, its
requests end with a clear 502, and other extensions keep being served."""

from __future__ import annotations

import asyncio
import json
import time

import psutil
import pytest
from aiohttp import web

import protoreg
from protoreg.broker import is_public_address
from protoreg.testing import write_extension
from tests.security.conftest import ATTACKER, victim_still_serves


def killed_for(caplog, needle: str) -> bool:
    return any(needle in r.getMessage() and "evil@test" in r.getMessage() for r in caplog.records)


async def victim_rate(session, n: int = 150) -> float:
    t = time.perf_counter()
    for _ in range(n):
        resp = await session.fetch("web+victim://v/")
        assert resp.status == 200
        await resp.read()
    return n / (time.perf_counter() - t)


async def test_a_worker_that_stops_reading_while_results_pile_up_is_killed(arena):
    session, _, caplog = arena
    assert (await session.fetch("web+evil://x/store_big")).status == 200
    rss = psutil.Process().memory_info().rss
    resp = await asyncio.wait_for(session.fetch("web+evil://x/calls?n=6000&batch=20"), 60)
    assert resp.status == 502 and "stopped reading its channel" in str(resp.error), await resp.text()
    assert psutil.Process().memory_info().rss - rss < 200 * 2**20
    assert killed_for(caplog, "stopped reading its channel")
    await victim_still_serves(session)


async def test_a_worker_with_too_many_capability_calls_outstanding_is_killed(arena):
    session, _, caplog = arena
    assert (await session.fetch("web+evil://x/store_big")).status == 200
    resp = await asyncio.wait_for(session.fetch("web+evil://x/calls?n=400&batch=400"), 30)
    assert resp.status == 502 and "capability calls outstanding" in str(resp.error), await resp.text()
    assert killed_for(caplog, "capability calls outstanding")
    await victim_still_serves(session)


@pytest.mark.parametrize(("attack", "reason"), [("pongs", "PONG that answers no PING"),
                                                ("empty_data", "empty DATA frame")])
async def test_frame_floods_kill_the_flooder_and_other_extensions_keep_their_throughput(arena, attack, reason):
    session, _, caplog = arena
    await victim_still_serves(session)
    assert (await session.fetch("web+evil://x/ppid")).status == 200  # the flooder's worker is up already
    await asyncio.sleep(0.3)  # and the warm spare has been replaced
    baseline = await victim_rate(session)
    flood = asyncio.ensure_future(session.fetch(f"web+evil://x/{attack}"))
    during = await victim_rate(session)
    resp = await asyncio.wait_for(flood, 20)
    assert resp.status == 502 and reason in str(resp.error), await resp.text()
    assert killed_for(caplog, reason)
    assert during > 0.3 * baseline, f"victim throughput fell from {baseline:.0f} to {during:.0f} req/s"


async def test_worker_text_reaches_host_logs_with_control_characters_escaped(arena):
    session, _, caplog = arena
    resp = await session.fetch("web+evil://x/forge_log")
    assert resp.status == 500
    await asyncio.sleep(0.2)
    mine = [r.getMessage() for r in caplog.records if "evil@test" in r.getMessage()]
    assert any("forged line" in m for m in mine)
    for message in mine:
        assert "\n" not in message and "\r" not in message and "\x1b" not in message and "\x07" not in message
    assert "\\n" in str(resp.error) and "\x1b" not in str(resp.error)


async def test_a_data_dir_nested_past_the_recursion_limit_is_removed_on_uninstall(tmp_path):
    reg = protoreg.Registry()
    root = write_extension(tmp_path / "attacker", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                           permissions=["storage"])
    reg.install(root)
    async with protoreg.Session(reg, protoreg.WorkerConfig(state_dir=str(tmp_path / "state"))) as session:
        resp = await session.fetch("web+evil://x/nest?depth=3000")
        assert json.loads(await resp.text())["result"] == "allowed"
        data = session.broker.data_root / "ext-evil@test"
        assert data.exists()
        reg.uninstall("evil@test")
        assert not data.exists()
        assert not any(p.name.startswith(".removing-") for p in session.broker.data_root.iterdir())
        reg.install(root)
        assert list(session.broker.data_dir(reg.extensions["evil@test"]).iterdir()) == []


@pytest.mark.parametrize("address", ["100.64.0.1", "100.100.100.200", "fec0::1", "::ffff:127.0.0.1",
                                     "64:ff9b::7f00:1", "2002:7f00:1::1", "10.0.0.1", "169.254.169.254", "::1",
                                     "fe80::1", "224.0.0.1", "0.0.0.0", "198.18.0.1"])
def test_addresses_that_are_not_globally_routable_are_not_public(address):
    import ipaddress

    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_globally_routable_addresses_are_public(address):
    import ipaddress

    assert is_public_address(ipaddress.ip_address(address))


async def test_the_broker_refuses_shared_and_site_local_addresses(tmp_path):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "f", scheme="web+f", ext_id="f@test", host_permissions=["http://*/*"],
                                script="""
        import json
        from protoreg import Response, runtime
        async def handleRequest(request):
            try:
                await runtime.fetch("http://" + request.url.query["to"] + "/")
                return Response("fetched")
            except PermissionError as e:
                return Response(str(e))
    """))
    async with protoreg.Session(reg) as session:
        for to in ("100.100.100.200", "100.64.0.1", "[fec0::1]", "[::ffff:127.0.0.1]"):
            text = await (await session.fetch(f"web+f://x/?to={to}")).text()
            assert "refused to prevent server-side request forgery" in text, (to, text)
            assert "allow_networks" in text


@pytest.fixture
async def upstream():
    """Two loopback origins: /slow holds the connection, /redirect sends to the other port, /echo shows headers."""
    seen: dict[str, object] = {"concurrent": 0, "max": 0, "auth": []}

    async def slow(request):
        seen["concurrent"] += 1
        seen["max"] = max(seen["max"], seen["concurrent"])
        await asyncio.sleep(0.5)
        seen["concurrent"] -= 1
        return web.Response(text="slow")

    async def echo(request):
        seen["auth"].append(request.headers.get("Authorization"))
        return web.Response(text="echo")

    apps, runners, ports = [], [], []
    for _ in range(2):
        app = web.Application()
        app.router.add_get("/slow", slow)
        app.router.add_get("/echo", echo)
        apps.append(app)
    for app in apps:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])

    async def redirect(request):
        raise web.HTTPFound(f"http://127.0.0.1:{ports[1]}/echo")

    apps[0].router._frozen = False
    apps[0].router.add_get("/redirect", redirect)
    seen["ports"] = ports
    yield seen
    for runner in runners:
        await runner.cleanup()


async def test_concurrent_brokered_fetches_are_limited_per_extension(tmp_path, upstream, arena):
    session, _, _ = arena
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "a", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                                host_permissions=["http://127.0.0.1/*"]))
    config = protoreg.WorkerConfig(allow_networks=("127.0.0.0/8",), max_concurrent_fetches=4)
    async with protoreg.Session(reg, config) as own:
        url = f"http://127.0.0.1:{upstream['ports'][0]}/slow"
        results = json.loads(await (await own.fetch(f"web+evil://x/fetches?n=12&url={url}")).text())
    assert results.count(200) == 4
    denied = [r for r in results if r != 200]
    assert len(denied) == 8 and all("limit is 4 concurrent fetches per extension" in r for r in denied)
    assert upstream["max"] <= 4


async def test_storage_is_bounded_by_a_per_extension_quota(tmp_path):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "a", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                                permissions=["storage"]))
    async with protoreg.Session(reg, protoreg.WorkerConfig(storage_quota=1_000_000)) as session:
        out = json.loads(await (await session.fetch("web+evil://x/fill_storage?n=30")).text())
        assert out["stored"] == 9 and "storage quota is 1000000 bytes" in out["error"]
        assert session.broker.storage.usage("evil@test") <= 1_000_000


async def test_authorization_is_dropped_when_a_brokered_fetch_is_redirected_to_another_origin(tmp_path, upstream):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "f", scheme="web+f", ext_id="f@test",
                                host_permissions=["http://127.0.0.1/*"], script=f"""
        from protoreg import Response, runtime
        async def handleRequest(request):
            r = await runtime.fetch("http://127.0.0.1:{upstream['ports'][0]}/redirect",
                                    headers={{"Authorization": "Bearer secret"}})
            return Response(r.text())
    """))
    async with protoreg.Session(reg, protoreg.WorkerConfig(allow_networks=("127.0.0.1/32",))) as session:
        assert await (await session.fetch("web+f://x/")).text() == "echo"
    assert upstream["auth"] == [None]


async def test_authorization_is_dropped_when_session_fetch_follows_a_cross_origin_redirect(tmp_path):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "r", scheme="web+r", ext_id="r@test", script="""
        from protoreg import Response
        async def handleRequest(request):
            if request.url.host == "a":
                return Response.redirect("web+r://b/", 302)
            return Response(request.headers.get("Authorization") or "no credentials")
    """))
    async with protoreg.Session(reg) as session:
        resp = await session.fetch("web+r://a/", headers={"Authorization": "Bearer secret"})
        assert await resp.text() == "no credentials"
        same = await session.fetch("web+r://b/", headers={"Authorization": "Bearer secret"})
        assert await same.text() == "Bearer secret"


ISOLATED = """
import asyncio, json, struct, sys
from protoreg import Response, runtime

async def handleRequest(request):
    if request.url.path == "/keep":  # the victim origin: store a secret, then hold the request open
        await runtime.storage.set("secret", b"victim's secret")
        await asyncio.sleep(1.5)
        return Response("kept")
    if request.url.path == "/pid":
        import os
        return Response(str(os.getpid()))
    # the attacker origin: name every stream id the worker could know in raw storage calls
    server = sys.modules["protoreg.runtime"]._call.__self__
    found = []
    for sid in range(1, 40):
        fut = asyncio.get_running_loop().create_future()
        server.calls[5000 + sid] = fut
        payload = json.dumps({"id": 5000 + sid, "cap": "storage.get", "args": {"key": "secret"}}).encode()
        server.channel._transport.write(struct.pack("!BBII", 10, 0, sid, len(payload)) + payload)
        try:
            value = await asyncio.wait_for(fut, 2)
        except Exception as e:
            value = type(e).__name__
        found.append(value)
    return Response(json.dumps(found))
"""


async def test_with_origin_isolation_a_worker_can_not_reach_another_origins_storage(tmp_path):
    import base64

    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "x", scheme="web+x", ext_id="x@test", script=ISOLATED,
                                permissions=["storage"], manifest_extra={"origin_isolation": "origin"}))
    async with protoreg.Session(reg) as session:
        keep = asyncio.ensure_future(session.fetch("web+x://victim/keep"))
        await asyncio.sleep(0.5)
        steal = await session.fetch("web+x://attacker/steal")
        text = await steal.text()
        assert (await keep).status == 200
        secret = base64.b64encode(b"victim's secret").decode()
        assert secret not in text
        # Its worker serves one origin, so naming any other stream is a protocol violation: it is killed.
        assert steal.status == 502 and "which was never opened" in text
        victim_pid = await (await session.fetch("web+x://victim/pid")).text()
        attacker_pid = await (await session.fetch("web+x://attacker/pid")).text()
        assert victim_pid != attacker_pid


ORIGIN_PID = """
import asyncio, os
from protoreg import Response
async def handleRequest(request):
    if request.url.path == "/slow":
        await asyncio.sleep(3)
    return Response(str(os.getpid()))
"""


def _host_workers(session) -> list[int]:
    """Worker processes alive on the host (psutil, not the manager's bookkeeping)."""
    me = psutil.Process()
    return [p.pid for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def test_origin_isolation_does_not_let_a_page_start_a_worker_per_host_it_names(tmp_path):
    """A page (or anything that can make requests) names as many hosts as it likes; with origin_isolation each was
    a new worker process, without bound. At most max_isolated_origins run; idle ones make room, busy ones refuse."""
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "x", scheme="web+x", ext_id="x@test", script=ORIGIN_PID,
                                manifest_extra={"origin_isolation": "origin"}))
    config = protoreg.WorkerConfig(max_isolated_origins=4, prestart=False)
    async with protoreg.Session(reg, config) as session:
        pids = set()
        for i in range(12):  # one after the other: each new origin displaces the least recently used idle one
            resp = await session.fetch(f"web+x://h{i}/")
            assert resp.status == 200, await resp.text()
            pids.add(await resp.text())
        assert len(pids) == 12  # still one worker per origin while it runs
        assert len(_host_workers(session)) <= 4
        # four busy origins: a fifth is refused at once, naming the limit, and nothing new starts on the host
        slow = [asyncio.ensure_future(session.fetch(f"web+x://busy{i}/slow")) for i in range(4)]
        await asyncio.sleep(1.0)
        refused = await session.fetch("web+x://one-more/")
        assert refused.status == 503, await refused.text()
        assert "max_isolated_origins" in await refused.text()
        assert len(_host_workers(session)) <= 4
        assert [r.status for r in await asyncio.gather(*slow)] == [200] * 4
        assert (await session.fetch("web+x://one-more/")).status == 200  # room again


# FILE frames (protoreg/worker/files.py): the worker names a file, the parent reads it. It must read nothing the
# worker could not, and pass on nothing unverified. Checked on what reaches the caller.
@pytest.mark.parametrize(("query", "why"), [
    ("file=../../secret&length=11", "plain relative path"),       # out of the data dir
    ("file=link&length=11&link={secret}", "following a link"),   # a symlink the worker made to a host file
    ("file=mine&sha256=" + "0" * 64, "does not have the sha256"),  # a wrong hash: nothing is sent
])
async def test_a_worker_can_not_make_the_parent_send_a_host_file_or_unverified_bytes(arena, tmp_path, query, why):
    session, _, _ = arena
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    # Raw FILE frames, as a compromised worker would write them (the worker's own library refuses these earlier).
    resp = await session.fetch(f"web+evil://x/raw_slice?{query.format(secret=secret)}")
    assert resp.status == 200  # the head went out before the body
    with pytest.raises(protoreg.HandlerError, match=why) as info:
        await resp.read()
    assert b"host secret" not in str(info.value).encode()
    await victim_still_serves(session)


async def test_the_worker_library_refuses_a_slice_outside_its_data_dir(arena):
    session, _, _ = arena
    resp = await session.fetch("web+evil://x/slice?file=../../secret&length=11")
    with pytest.raises(protoreg.HandlerError, match="a relative path inside it"):
        await resp.read()


async def test_a_verified_file_of_the_data_dir_is_sent_by_reference(arena):
    session, _, _ = arena
    resp = await session.fetch("web+evil://x/slice?file=mine")
    assert (resp.status, await resp.read()) == (200, b"<mine>")
