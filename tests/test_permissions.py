"""The permission manager: decisions (allow/prompt/deny, source, expiry), prompts through Session(on_prompt=...),
revocation reaching a running worker, session expiry, persistence, the ceiling, and the persistent audit log.
Real workers, real profile files."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

import protoreg
from protoreg import Profile, PromptAnswer
from protoreg.audit import AuditLog
from protoreg.permissions import DecisionError, Grantee, PermissionManager, parse_expires, wait_for_dashboard
from protoreg.testing import write_extension
from tests.trust_helpers import Store, make_extension

EXT = "perm@test"
HANDLER = """
import json, os
from protoreg import Response, runtime
from protoreg.errors import PermissionDenied

async def handleRequest(request):
    q = dict(request.url.query)
    try:
        if request.url.path == "/set":
            await runtime.storage.set("k", q.get("v", "x"))
            return Response.json({"ok": True, "pid": os.getpid()})
        if request.url.path == "/data":
            return Response.json({"ok": True, "dir": str(runtime.data_dir()), "pid": os.getpid()})
        if request.url.path == "/fetch":
            r = await runtime.fetch(q["url"])
            return Response.json({"ok": True, "body": r.text(), "pid": os.getpid()})
    except PermissionDenied as e:
        return Response.json({"denied": str(e), "pid": os.getpid()}, status=403)
    return Response.error(404)
"""


@pytest.fixture
def profile(tmp_path):
    p = Profile(tmp_path / "profile")
    ext = write_extension(tmp_path / "perm", scheme="web+perm", script=HANDLER, ext_id=EXT, permissions=["storage"],
                          host_permissions=["http://127.0.0.1/*"])
    p.install_unsigned(ext, accept_risk=True)
    return p


def grantee(profile: Profile) -> Grantee:
    return Grantee.from_record(EXT, profile.grants(EXT))


async def call(session, path="/set"):
    resp = await session.fetch(f"web+perm://site{path}")
    return resp.status, json.loads(await resp.text())


def test_defaults_come_from_the_grants(profile):
    pm = profile.decisions()
    dec = pm.decision(grantee(profile), "storage")
    assert (dec.state, dec.source, dec.expires) == ("allow", "default", None)
    assert pm.decision(grantee(profile), "history").state == "deny"


async def test_prompt_allow_then_deny_through_on_prompt(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    answers, asked = ["allow", "deny"], []

    async def on_prompt(req):
        asked.append(req)
        return answers.pop(0)

    async with profile.session(on_prompt=on_prompt) as session:
        assert (await call(session))[0] == 200
        status, body = await call(session)
        assert status == 403 and "denied storage when prompted" in body["denied"]
        req = asked[0]
        assert (req.extension, req.permission, req.capability, req.target) == (EXT, "storage", "storage.set", "k")
        assert req.origin == "web+perm://site"
        assert len(asked) == 2  # not remembered: every call asks
        denied = session.audit.records(decision="denied")
        assert [r.permission for r in denied] == ["storage"] and "when prompted" in denied[0].reason
        assert "allowed when prompted" in session.audit.records(decision="allowed")[0].reason


async def test_a_remembered_answer_becomes_a_user_decision(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    asked = []

    async def on_prompt(req):
        asked.append(req)
        return PromptAnswer("allow", expires="1h")

    async with profile.session(on_prompt=on_prompt) as session:
        assert (await call(session))[0] == 200
        assert (await call(session))[0] == 200
        assert len(asked) == 1
    dec = Profile(profile.path).decisions().decision(grantee(profile), "storage")
    assert dec.state == "allow" and dec.source == "user" and 3500 < dec.expires - time.time() <= 3600


async def test_without_on_prompt_the_denial_says_how_to_decide(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    async with profile.session() as session:
        status, body = await call(session)
    assert status == 403
    msg = body["denied"]
    assert f"protoreg grants {EXT} --allow storage --profile {profile.path}" in msg
    assert "dashboard" in msg and "on_prompt" in msg


async def test_identical_concurrent_prompts_are_coalesced(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    asked, release = [], asyncio.Event()

    async def on_prompt(req):
        asked.append(req)
        await release.wait()
        return "allow"

    async with profile.session(on_prompt=on_prompt) as session:
        calls = [asyncio.ensure_future(call(session)) for _ in range(3)]
        for _ in range(200):
            if asked and asked[0].waiting == 3:
                break
            await asyncio.sleep(0.02)
        assert len(asked) == 1 and asked[0].waiting == 3
        assert [p.id for p in session.permissions.pending()] == [asked[0].id]
        release.set()
        assert [s for s, _ in await asyncio.gather(*calls)] == [200, 200, 200]
        assert session.permissions.pending() == []


async def test_a_prompt_times_out_as_a_denial_and_says_so(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    async with profile.session(on_prompt=wait_for_dashboard, prompt_timeout=0.5) as session:
        status, body = await call(session)
    assert status == 403 and "within 0.5s" in body["denied"] and "denied" in body["denied"]


async def test_the_dashboard_answers_a_pending_prompt(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    async with profile.session(on_prompt=wait_for_dashboard) as session:
        task = asyncio.ensure_future(call(session))
        for _ in range(200):
            if session.permissions.pending():
                break
            await asyncio.sleep(0.02)
        (req,) = session.permissions.pending()
        assert session.permissions.answer(req.id, "allow", "session")
        assert (await task)[0] == 200
        assert session.permissions.decision(grantee(profile), "storage").expires == "session"
        assert not session.permissions.answer(req.id, "allow")  # already answered


async def test_a_revoke_reaches_the_running_worker_at_its_next_call(profile):
    async with profile.session() as session:
        status, first = await call(session)
        assert status == 200
        # another process's view (the CLI, the dashboard): a separate manager on the same profile
        Profile(profile.path).decisions().revoke(grantee(profile), "storage")
        status, second = await call(session)
        assert status == 403 and second["pid"] == first["pid"]  # same worker, no restart
        assert "storage is denied (deny by the user, never expires)" in second["denied"]
        Profile(profile.path).decisions().decide(grantee(profile), "storage", "allow")
        status, third = await call(session)
        assert status == 200 and third["pid"] == first["pid"]


async def test_session_expiry_ends_with_the_session(profile):
    pm = profile.decisions()
    pm.decide(grantee(profile), "storage", "deny")  # persistent
    async with profile.session() as session:
        session.permissions.decide(grantee(profile), "storage", "allow", expires="session")
        assert (await call(session))[0] == 200
        assert Profile(profile.path).decisions().decision(grantee(profile), "storage").expires == "session"
    dec = Profile(profile.path).decisions().decision(grantee(profile), "storage")
    # the session's allow replaced the user's deny (one decision per permission) and ended with the session
    assert dec.state == "allow" and dec.source == "default"
    # a "session" decision made outside any session (the CLI) ends when the next Session using the profile closes
    pm.decide(grantee(profile), "storage", "deny", expires="session")
    async with profile.session() as session:
        assert (await call(session))[0] == 403
    assert pm.decision(grantee(profile), "storage").state == "allow"


async def test_a_session_decision_of_a_dead_process_is_not_in_force(profile):
    data = {EXT: {"storage": {"state": "deny", "source": "user", "expires": "session", "session": "999999999:1:x",
                              "set_at": time.time()}}}
    (profile.path / "decisions.json").write_text(json.dumps(data))
    assert profile.decisions().decision(grantee(profile), "storage").state == "allow"


def test_decisions_survive_a_profile_reload(profile):
    until = time.time() + 7200
    profile.decisions().decide(grantee(profile), "storage", "deny", expires=until)
    profile.decisions().decide(grantee(profile), "http://127.0.0.1/*", "prompt")
    again = Profile(profile.path).decisions()
    dec = again.decision(grantee(profile), "storage")
    assert (dec.state, dec.source, round(dec.expires)) == ("deny", "user", round(until))
    assert again.decision(grantee(profile), "http://127.0.0.1/*").state == "prompt"
    assert set(again.decisions(grantee(profile))) == {"storage", "http://127.0.0.1/*"}


def test_an_expired_decision_falls_back_to_the_default(profile):
    pm = profile.decisions()
    pm.decide(grantee(profile), "storage", "deny", expires=time.time() + 0.2)
    assert pm.decision(grantee(profile), "storage").state == "deny"
    time.sleep(0.3)
    assert pm.decision(grantee(profile), "storage").state == "allow"


def test_uninstall_forgets_the_decisions(profile):
    profile.decisions().decide(grantee(profile), "storage", "deny")
    profile.uninstall(EXT)
    assert EXT not in json.loads((profile.path / "decisions.json").read_text())


def test_a_user_decision_never_exceeds_the_store_ceiling(tmp_path):
    store = Store(tmp_path / "stores")
    store.publish(make_extension(tmp_path, permissions=["storage"], host_permissions=["https://evil.example/*"]))
    profile = Profile(tmp_path / "p")
    profile.trust("alpha", str(store.dir), store.root_json, ceiling="storage")
    profile.install("hello@example.org")
    g = Grantee.from_record("hello@example.org", profile.grants("hello@example.org"))
    pm = profile.decisions()
    assert pm.decision(g, "storage").source == "store" and pm.decision(g, "storage").state == "allow"
    with pytest.raises(DecisionError, match="never exceed the store ceiling") as info:
        pm.decide(g, "https://evil.example/*", "allow")
    assert "not within the ceiling of store alpha" in str(info.value)
    with pytest.raises(DecisionError, match="does not request"):
        pm.decide(g, "history", "deny")
    pm.decide(g, "https://evil.example/*", "deny")  # denying is always fine
    # a stored allow beyond the ceiling (an edited file) is never in force
    data = json.loads((profile.path / "decisions.json").read_text())
    data["hello@example.org"]["https://evil.example/*"]["state"] = "allow"
    (profile.path / "decisions.json").write_text(json.dumps(data))
    assert pm.decision(g, "https://evil.example/*").state == "deny"


def test_parse_expires():
    now = 1_000_000.0
    assert parse_expires("never") is None and parse_expires(None) is None
    assert parse_expires("session") == "session"
    assert parse_expires("1h", now=now) == now + 3600
    assert parse_expires("1h30m", now=now) == now + 5400
    assert parse_expires("2d", now=now) == now + 172800
    assert parse_expires("2099-01-01T00:00Z") == 4070908800.0
    with pytest.raises(DecisionError, match="not understood"):
        parse_expires("tomorrow")
    with pytest.raises(DecisionError, match="in the past"):
        parse_expires("2001-01-01T00:00Z")


@pytest.fixture
async def upstream():
    app = web.Application()
    async def ok(request):
        return web.Response(text="upstream")

    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]
    await runner.cleanup()


async def test_host_permission_decisions_and_audit_queries(profile, upstream):
    url = f"http://127.0.0.1:{upstream}/ok"
    start = time.time()
    async with profile.session(allow_private_networks=True) as session:
        status, body = await call(session, f"/fetch?url={url}")
        assert status == 200 and body["body"] == "upstream"
        profile.decisions().decide(grantee(profile), "http://127.0.0.1/*", "deny", expires="1h")
        status, body = await call(session, f"/fetch?url={url}")
        assert status == 403 and "http://127.0.0.1/* is denied" in body["denied"]
        middle = time.time()
        assert (await call(session))[0] == 200
    # the log is in the profile: a new reader sees every record
    log = AuditLog(path=profile.path / "audit.sqlite3")
    try:
        assert [r.decision for r in log.records(extension=EXT)] == ["allowed", "denied", "allowed"]
        assert log.records(extension="other@test") == []
        fetches = log.records(permission="fetch")
        assert len(fetches) == 2 and fetches[0].permission == "http://127.0.0.1/*"
        assert len(log.records(permission="http://127.0.0.1/*")) == 2
        assert [r.capability for r in log.records(permission="storage")] == ["storage.set"]
        (denied,) = log.records(decision="denied")
        assert denied.target == url and "is denied (deny by the user, until" in denied.reason
        assert [r.capability for r in log.records(since=middle)] == ["storage.set"]
        assert len(log.records(since=start, until=middle)) == 2
        assert log.recent(1)[0].capability == "storage.set"
    finally:
        log.close()


def test_an_in_memory_manager_and_public_names():
    assert protoreg.PermissionManager is PermissionManager
    pm = PermissionManager()
    g = Grantee("x@test", ("storage",), ("storage",))
    pm.decide(g, "storage", "prompt")
    assert pm.decision(g, "storage").state == "prompt"
    assert PermissionManager().decision(g, "storage").state == "allow"  # memory is not shared


async def test_the_data_dir_follows_the_storage_decision_at_worker_start(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    async with profile.session() as session:
        status, body = await call(session, "/data")
        assert status == 403 and "decision for storage was not allow" in body["denied"]
    profile.decisions().decide(grantee(profile), "storage", "allow")
    async with profile.session() as session:
        status, body = await call(session, "/data")
        assert status == 200 and body["dir"].endswith("ext-perm@test")


async def test_a_decision_made_elsewhere_answers_a_pending_prompt(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")
    async with profile.session(on_prompt=wait_for_dashboard, prompt_timeout=30) as session:
        task = asyncio.ensure_future(call(session))
        for _ in range(200):
            if session.permissions.pending():
                break
            await asyncio.sleep(0.02)
        Profile(profile.path).decisions().decide(grantee(profile), "storage", "allow", expires="session")  # the CLI
        status, _ = await asyncio.wait_for(task, 5)
        assert status == 200 and session.permissions.pending() == []


async def test_a_failing_prompt_handler_denies_and_says_so(profile):
    profile.decisions().decide(grantee(profile), "storage", "prompt")

    async def broken(req):
        raise RuntimeError("no UI")

    async def odd(req):
        return "maybe"

    async with profile.session(on_prompt=broken) as session:
        status, body = await call(session)
    assert status == 403 and "prompt handler failed (RuntimeError: no UI)" in body["denied"]
    async with profile.session(on_prompt=odd) as session:
        status, body = await call(session)
    assert status == 403 and "neither allow nor deny" in body["denied"]
