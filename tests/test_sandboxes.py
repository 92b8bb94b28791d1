"""Named sandboxes (issue 14): privilege separation inside one extension, messages, grants, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest

import protoreg
from protoreg.sandboxes import MAX_MESSAGE, sandbox_extension

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "split-privileges"


def _cid(block: bytes) -> str:
    raw = b"\x01\x55\x12\x20" + hashlib.sha256(block).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _write(root: Path, manifest: dict, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


# A handler that sends /<sandbox>/<message> with the query "payload" (JSON) and reports the outcome as JSON.
CALLER = """
    import json
    from protoreg import Response, runtime
    from protoreg.errors import MessageError, PermissionDenied

    async def handleRequest(request):
        _, name, message = request.url.path.split("/", 2)
        payload = json.loads(request.url.query.get("payload", "null"))
        if request.url.query.get("big"):
            payload = "x" * int(request.url.query["big"])
        timeout = float(request.url.query["timeout"]) if "timeout" in request.url.query else None
        try:
            value = await runtime.sandbox(name).call(message, payload, timeout=timeout)
            out = {"ok": True, "value": value}
        except MessageError as exc:
            out = {"ok": False, "kind": exc.kind, "message": str(exc)}
        except PermissionDenied as exc:
            out = {"ok": False, "kind": "PermissionDenied", "message": str(exc)}
        return Response(json.dumps(out), headers={"content-type": "application/json"})
"""

WORKER = """
    import asyncio, os
    from protoreg import runtime
    from protoreg.errors import UnknownMessage

    async def handleMessage(name, payload):
        if name == "echo":
            return {"echo": payload}
        if name == "sleep":
            await asyncio.sleep(payload)
            return "woke"
        if name == "crash":
            os._exit(7)
        if name == "pid":
            return os.getpid()
        if name == "raise":
            raise ValueError("boom")
        if name == "not_json":
            return {1, 2}
        if name == "storage":
            await runtime.storage.set("k", "v")
            return (await runtime.storage.get("k")).decode()
        if name == "data_dir":
            return str(runtime.data_dir())
        if name == "fetch":
            return (await runtime.fetch(payload)).status
        if name == "sibling":
            return await runtime.sandbox("other").call("echo", 1)
        raise UnknownMessage(name)
"""


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    return _write(tmp_path / "caller", {
        "manifest_version": 3, "name": "Caller", "version": "1.0.0",
        "browser_specific_settings": {"gecko": {"id": "caller@test"}},
        "protocol_handlers": [{"protocol": "web+caller", "name": "c", "uriHandlerScript": "handler.py"}],
        "permissions": ["storage"],
        "sandboxes": {"worker": {"script": "worker.py"},
                      "other": {"script": "worker.py", "permissions": ["storage"]}},
    }, {"handler.py": CALLER, "worker.py": WORKER})


async def _call(session: protoreg.Session, path: str, **query: str) -> dict:
    from urllib.parse import urlencode

    resp = await session.fetch(f"web+caller://x/{path}" + (f"?{urlencode(query)}" if query else ""))
    assert resp.status == 200, await resp.text()
    return json.loads(await resp.text())


async def test_the_handler_of_the_example_holds_no_capability_its_sandboxes_do():
    reg = protoreg.Registry()
    reg.install(EXAMPLE)
    async with protoreg.Session(reg) as session:
        resp = await session.fetch("web+blocks://probe/")
        probe = json.loads(await resp.text())
        assert probe["fetch"].startswith("PermissionDenied:")
        assert probe["storage"].startswith("PermissionDenied:")
        assert probe["data_dir"].startswith("PermissionDenied:")  # absent, not merely unused
        handler = next(w for w in session.workers.workers() if w.sandbox is None)
        assert handler.hello["sandbox"]["enabled"]  # the same OS sandbox as every handler
        denied = [(r.extension, r.capability, r.decision) for r in session.audit.records()]
        assert ("split-privileges@example.org", "fetch", "denied") in denied
        assert ("split-privileges@example.org", "storage.get", "denied") in denied
    ext = reg.extensions["split-privileges@example.org"]
    assert protoreg.broker.Grants.from_extension(ext).permissions == frozenset()
    assert protoreg.broker.Grants.from_extension(ext).hosts == ()


async def test_the_example_fetches_through_net_caches_through_store(tmp_path: Path):
    from aiohttp import web

    block = b"hello from a raw block\n"
    cid = _cid(block)
    served: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(body=block if request.path == f"/ipfs/{cid}" else b"", status=200)

    app = web.Application()
    app.router.add_get("/{tail:.*}", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    root = tmp_path / "split"
    shutil.copytree(EXAMPLE, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["sandboxes"]["net"]["host_permissions"] = ["http://127.0.0.1/*"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    net = (root / "net.py").read_text().replace("https://trustless-gateway.link", f"http://127.0.0.1:{port}")
    (root / "net.py").write_text(net)
    reg = protoreg.Registry()
    reg.install(root)
    try:
        async with protoreg.Session(reg, allow_private_networks=True, state_dir=str(tmp_path / "state")) as session:
            first = await session.fetch(f"web+blocks://{cid}/")
            assert (first.status, await first.read()) == (200, block), await first.text()
            assert first.headers["x-block-source"] == "network"
            second = await session.fetch(f"web+blocks://{cid}/")
            assert (await second.read(), second.headers["x-block-source"]) == (block, "cache")
            assert served == [f"/ipfs/{cid}"]
            calls = {(r.extension, r.capability, r.decision) for r in session.audit.records()}
            assert ("split-privileges@example.org#net", "fetch", "allowed") in calls
            assert ("split-privileges@example.org#store", "storage.set", "allowed") in calls
            assert ("split-privileges@example.org", "sandbox.call", "allowed") in calls
            assert not any(e == "split-privileges@example.org" and c in ("fetch", "storage.set") and d == "allowed"
                           for e, c, d in calls)
            labels = sorted(w.label for w in session.workers.workers())
            assert labels == ["split-privileges@example.org", "split-privileges@example.org#net",
                              "split-privileges@example.org#store"]
            pids = {w.pid for w in session.workers.workers()}
            assert len(pids) == 3  # three processes
        # Only the store sandbox got a data directory, named after it.
        data = sorted(p.name for p in (tmp_path / "state" / "data").iterdir())
        assert data == ["sbx-split-privileges@example.org_store"]
        assert (tmp_path / "state" / "data" / data[0] / f"{cid}.bin").read_bytes() == block
        # A bad block is refused by the handler, which verifies hashes.
        reg2 = protoreg.Registry()
        reg2.install(root)
        async with protoreg.Session(reg2, allow_private_networks=True) as session:
            other = _cid(b"something else")
            bad = await session.fetch(f"web+blocks://{other}/")
            assert bad.status == 502 and "does not match its hash" in await bad.text()
    finally:
        await runner.cleanup()


async def test_messages_round_trip_and_each_failure_has_a_clear_kind(ext_dir: Path):
    reg = protoreg.Registry()
    reg.install(ext_dir)
    async with protoreg.Session(reg, request_timeout=10) as session:
        assert await _call(session, "worker/echo", payload='{"a": [1, "é"]}') == {
            "ok": True, "value": {"echo": {"a": [1, "é"]}}}
        undeclared = await _call(session, "nope/echo")
        assert undeclared["kind"] == "undeclared" and "unknown sandbox 'nope'" in undeclared["message"]
        unknown = await _call(session, "worker/what")
        assert unknown["kind"] == "unknown_message" and "'what'" in unknown["message"]
        big = await _call(session, "worker/echo", big=str(MAX_MESSAGE + 10))
        assert big["kind"] == "too_large"
        raised = await _call(session, "worker/raise")
        assert raised["kind"] == "failed" and "ValueError: boom" in raised["message"]
        assert "worker.py" in raised["message"]
        assert (await _call(session, "worker/not_json"))["kind"] == "not_json"
        slow = await _call(session, "worker/sleep", payload="5", timeout="0.3")
        assert slow["kind"] == "timeout" and "within 0.3s" in slow["message"]
        first_pid = (await _call(session, "worker/pid"))["value"]
        crashed = await _call(session, "worker/crash")
        assert crashed["kind"] == "crashed" and "exited with code 7" in crashed["message"]
        # Restarted on the next message (after the pool's crash backoff), in a new process.
        again = await _call(session, "worker/pid")
        assert again["ok"] and again["value"] != first_pid
        sibling = await _call(session, "worker/sibling")
        assert sibling["kind"] == "refused" and "only the extension's handlers may message" in sibling["message"]
        stats = {p["extension"]: p for p in session.workers.stats()}
        assert stats["caller@test#worker"]["recent_crashes"] == 1


async def test_a_sandbox_has_only_its_own_grants_not_the_extensions(ext_dir: Path, tmp_path: Path):
    reg = protoreg.Registry()
    reg.install(ext_dir)
    async with protoreg.Session(reg, state_dir=str(tmp_path / "state")) as session:
        # The extension's handler has "storage"; the sandbox "worker" has nothing.
        storage = await _call(session, "worker/storage")
        assert storage["kind"] == "refused" and "caller@test#worker" in storage["message"]
        assert (await _call(session, "worker/data_dir"))["kind"] == "refused"
        fetch = await _call(session, "worker/fetch", payload='"https://example.org/"')
        assert fetch["kind"] == "refused"
        # The sandbox "other" has "storage": its own data dir, its own partition.
        assert (await _call(session, "other/storage")) == {"ok": True, "value": "v"}
        path = (await _call(session, "other/data_dir"))["value"]
        assert path.endswith("sbx-caller@test_other")
        assert Path(path).is_dir()
        denied = [r for r in session.audit.records() if r.decision == "denied"]
        assert {r.extension for r in denied} == {"caller@test#worker"}
        # The user's decision for the sandbox is its own: denying "storage" to caller@test#other stops it there,
        # and leaves the extension's own "storage" alone.
        session.permissions.decide(sandbox_extension(reg.extensions["caller@test"], "other"), "storage", "deny")
        assert (await _call(session, "other/storage"))["kind"] == "refused"
        assert session.permissions.decision(reg.extensions["caller@test"], "storage").state == "allow"
        # Uninstalling removes each sandbox's storage and data directory too.
        reg.uninstall("caller@test")
        assert not Path(path).exists()
        assert session.broker.storage.usage("caller@test#other") == 0


async def test_a_handler_cannot_reach_a_sandbox_of_another_extension(ext_dir: Path, tmp_path: Path):
    other = _write(tmp_path / "intruder", {
        "manifest_version": 3, "name": "Intruder", "version": "1.0.0",
        "protocol_handlers": [{"protocol": "web+intruder", "name": "i", "uriHandlerScript": "handler.py"}],
    }, {"handler.py": CALLER})
    reg = protoreg.Registry()
    reg.install(ext_dir)
    reg.install(other)
    async with protoreg.Session(reg) as session:
        resp = await session.fetch("web+intruder://x/worker/echo?payload=1")
        out = json.loads(await resp.text())
        assert out["kind"] == "undeclared" and "intruder@local declares no such sandbox" in out["message"]
        assert not any(w.sandbox for w in session.workers.workers())  # nothing was started for it


async def test_sandbox_workers_stop_when_idle_and_start_on_the_next_message(ext_dir: Path):
    reg = protoreg.Registry()
    reg.install(ext_dir)
    async with protoreg.Session(reg, idle_timeout=0.3) as session:
        pid = (await _call(session, "worker/pid"))["value"]
        for _ in range(60):
            await asyncio.sleep(0.1)
            if not any(w.sandbox == "worker" for w in session.workers.workers()):
                break
        assert not any(w.sandbox == "worker" for w in session.workers.workers())
        assert (await _call(session, "worker/pid"))["value"] != pid


def test_sandbox_extension_takes_its_grants_within_the_extensions_effective_grants(ext_dir: Path):
    import dataclasses

    reg = protoreg.Registry()
    ext = reg.install(ext_dir)
    other = sandbox_extension(ext, "other")
    assert other.id == "caller@test#other"
    assert protoreg.broker.Grants.from_extension(other).permissions == {"storage"}
    assert protoreg.broker.Grants.from_extension(sandbox_extension(ext, "worker")).permissions == frozenset()
    clipped = dataclasses.replace(ext, granted_permissions=frozenset(), granted_hosts=())
    assert protoreg.broker.Grants.from_extension(sandbox_extension(clipped, "other")).permissions == frozenset()


def test_manifest_rejects_bad_sandbox_names_and_missing_scripts(tmp_path: Path):
    root = _write(tmp_path / "bad", {
        "manifest_version": 3, "name": "Bad", "version": "1.0.0",
        "protocol_handlers": [{"protocol": "web+bad", "name": "b", "uriHandlerScript": "handler.py"}],
        "sandboxes": {"Net!": {"script": "net.py"}, "ok": {"script": "missing.py", "permissions": ["storag"]}},
    }, {"handler.py": "async def handleRequest(r): pass\n", "net.py": ""})
    with pytest.raises(protoreg.ManifestError) as info:
        protoreg.Registry().install(root)
    text = str(info.value)
    assert "sandbox name 'Net!'" in text and "missing.py" in text and "storag" in text


def test_check_shows_each_sandbox_and_infers_capabilities_per_sandbox(tmp_path: Path, capsys):
    from protoreg.cli import main
    from protoreg.inference import infer
    from protoreg.manifest import load_manifest
    from protoreg.registry import read_bundle

    assert main(["check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "grants: none" in out
    assert "sandbox net (net.py, id split-privileges@example.org#net): grants: https://trustless-gateway.link/*" in out
    assert "sandbox store (store.py, id split-privileges@example.org#store): grants: storage" in out
    root = _write(tmp_path / "mixed", {
        "manifest_version": 3, "name": "Mixed", "version": "1.0.0",
        "protocol_handlers": [{"protocol": "web+mixed", "name": "m", "uriHandlerScript": "handler.py"}],
        "permissions": ["storage"],
        "sandboxes": {"net": {"script": "net.py", "host_permissions": ["https://a.example/*"]}},
    }, {"handler.py": """
            from protoreg import runtime
            async def handleRequest(r):
                await runtime.storage.get("k")                 # the extension has storage: fine
                await runtime.fetch("https://a.example/")       # only the sandbox may
                await runtime.sandbox("nope").call("x")
        """, "net.py": """
            import helper
            from protoreg import runtime
            async def handleMessage(name, payload):
                await runtime.fetch("https://a.example/")       # granted to the sandbox
                await runtime.sandbox("net").call("x")
        """, "helper.py": """
            from protoreg import runtime
            async def keep(v):
                await runtime.storage.set("k", v)               # runs in the sandbox, which lacks storage
        """})
    files, _ = read_bundle(root)
    found = sorted(str(f) for f in infer(files, load_manifest(root)))
    assert found == [
        "handler.py:5: fetches https://a.example/, which host_permissions does not grant: add "
        '"https://a.example/*" to host_permissions',
        "handler.py:6: messages the sandbox 'nope', which the manifest does not declare: add it under " '"sandboxes"',
        'helper.py:4: sandbox net: calls runtime.storage.set but the manifest lacks the "storage" permission: add '
        '"storage" to "sandboxes.net.permissions"',
        "net.py:6: sandbox net: calls runtime.sandbox, but only the extension's handlers may message its sandboxes",
    ]


def test_a_store_ceiling_clips_sandbox_grants_and_handlers_keep_only_their_own(tmp_path: Path):
    from protoreg.broker import Grants
    from protoreg.profile import Profile
    from tests.trust_helpers import Store

    root = tmp_path / "ext"
    shutil.copytree(EXAMPLE, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["sandboxes"]["net"]["host_permissions"].append("https://evil.example/*")
    (root / "manifest.json").write_text(json.dumps(manifest))
    store = Store(tmp_path / "stores")
    store.publish(root)
    profile = Profile(tmp_path / "p")
    profile.trust("alpha", str(store.dir), store.root_json, ceiling="storage,https://trustless-gateway.link/*")
    report = profile.install("split-privileges@example.org")
    assert "https://evil.example/*" in str(report)
    ext = profile.registry().extensions["split-privileges@example.org"]
    assert Grants.from_extension(ext).permissions == frozenset() and Grants.from_extension(ext).hosts == ()
    net = Grants.from_extension(sandbox_extension(ext, "net"))
    assert [p.text for p in net.hosts] == ["https://trustless-gateway.link/*"]
    assert Grants.from_extension(sandbox_extension(ext, "store")).permissions == {"storage"}
    from protoreg.permissions import Grantee

    assert Grantee.of(ext).granted == ()
    assert Grantee.of(sandbox_extension(ext, "store")).granted == ("storage",)


def test_protoreg_grants_shows_and_decides_for_a_sandbox(tmp_path: Path, capsys):
    from protoreg.cli import main
    from protoreg.profile import Profile

    profile = Profile(tmp_path / "p")
    profile.install_unsigned(EXAMPLE, accept_risk=True)
    prof = ["--profile", str(profile.path)]
    assert main(["grants", "split-privileges@example.org#store", "--deny", "storage", *prof]) == 0
    out = capsys.readouterr().out
    assert "requested: storage" in out and "granted:   storage" in out
    assert "storage: deny by the user" in out
    assert main(["grants", "split-privileges@example.org", *prof]) == 0
    out = capsys.readouterr().out
    assert "sandboxes: net, store (their own decisions: protoreg grants split-privileges@example.org#NAME)" in out
    assert out.rstrip().endswith("decisions:")  # the handlers themselves hold nothing to decide
    assert main(["grants", "split-privileges@example.org#nope", *prof]) == 1
    assert "declares no sandbox 'nope'" in capsys.readouterr().err
    ext = profile.registry().extensions["split-privileges@example.org"]
    decision = Profile(profile.path).decisions().decision(sandbox_extension(ext, "store"), "storage")
    assert decision.state == "deny"


async def test_profile_uninstall_removes_each_sandboxs_data_and_decisions(tmp_path: Path):
    from protoreg.profile import Profile

    profile = Profile(tmp_path / "p")
    profile.install_unsigned(EXAMPLE, accept_risk=True)
    ext = profile.registry().extensions["split-privileges@example.org"]
    store = sandbox_extension(ext, "store")
    profile.decisions().decide(store, "storage", "deny")
    data = profile.path / "data" / "sbx-split-privileges@example.org_store"
    data.mkdir(parents=True)
    (data / "x.bin").write_bytes(b"x")
    profile.uninstall("split-privileges@example.org")
    assert not data.exists()
    assert profile.decisions().decisions(store)["storage"].source != "user"
