"""The profile: installs persist, bundles are re-verified at load, revocation stops running workers, updates
asking for more wait for the user, unsigned code needs explicit consent. Real workers, real signatures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import protoreg
from protoreg import Profile
from protoreg.errors import ExtensionRevoked, TrustError
from tests.trust_helpers import Store, make_extension

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "stores")


@pytest.fixture
def profile(tmp_path):
    return Profile(tmp_path / "profile")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_default_profile_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Profile().path == tmp_path / "xdg" / "protoreg"


async def test_signed_install_serves_through_a_profile_session(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, permissions=["storage"]))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    reg = profile.registry()
    assert reg.extensions["hello@example.org"].provenance == "store alpha"
    async with profile.session(reg) as session:
        assert session.config.state_dir == str(profile.path)
        resp = await session.fetch("web+hello://world/")
        assert (resp.status, await resp.text()) == (200, "hello from world")
        await (await session.fetch("web+hello://world/set?v=kept")).read()
    assert (profile.path / "storage.sqlite3").exists()


def test_a_file_changed_in_the_profile_is_refused_at_load_by_name(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    store.publish(make_extension(tmp_path, "other@example.org", scheme="web+other"))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    profile.install("other@example.org")
    rec = profile.installed["hello@example.org"]
    handler = profile.path / "extensions" / rec["sha256"] / "files" / "handler.py"
    handler.chmod(0o644)
    handler.write_text("async def handleRequest(request):\n    import os; os.system('id')\n")
    reg = profile.registry()
    assert "hello@example.org" not in reg.extensions  # never executed
    assert "other@example.org" in reg.extensions      # the others still load
    assert "handler.py" in profile.problems["hello@example.org"]
    assert "changed on disk" in profile.problems["hello@example.org"]


async def test_revocation_stops_the_running_worker_and_answers_403(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    reg = profile.registry()
    async with profile.session(reg) as session:
        resp = await session.fetch("web+hello://world/")
        assert resp.status == 200
        await resp.read()
        pids = [w.pid for w in session.workers.workers()]
        assert pids and all(_alive(p) for p in pids)
        store.revoke("hello@example.org")
        report = await profile.update_async()
        assert report.revoked == ["hello@example.org: revoked by store alpha"]
        for _ in range(100):
            if not any(_alive(p) for p in pids):
                break
            await asyncio.sleep(0.05)
        assert not any(_alive(p) for p in pids), "the revoked extension's worker is still running"
        with pytest.raises(ExtensionRevoked, match="revoked by store alpha") as err:
            await session.fetch("web+hello://world/")
        assert err.value.status == 403
        assert not session.workers.workers()
        # The gateway answers 403 with the reason.
        from aiohttp.test_utils import TestClient, TestServer

        from protoreg.gateway import create_app

        app = create_app(reg, session=session)
        async with TestClient(TestServer(app)) as client:
            from protoreg.gateway.hosts import site_label

            site = site_label("hello@example.org", "web+hello", "world")
            r = await client.get("/", headers={"Host": f"world.web-hello.{site}.localhost"})
            assert r.status == 403
            assert "revoked by store alpha" in await r.text()
    # A new load keeps it disabled.
    reg2 = Profile(profile.path).registry()
    assert reg2.disabled["hello@example.org"] == "revoked by store alpha"


async def test_update_asking_for_a_new_permission_waits_for_the_decision(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, greeting="v1"))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    reg = profile.registry()
    async with profile.session(reg) as session:
        # 1.1.0 asks for nothing new: installed without a question.
        store.publish(make_extension(tmp_path, version="1.1.0", greeting="v11"))
        report = profile.update()
        assert report.updated == ["hello@example.org 1.0.0 -> 1.1.0"] and not report.pending
        assert await (await session.fetch("web+hello://w/")).text() == "v11 from w"
        # 2.0.0 asks for storage: it waits, 1.1.0 keeps running.
        store.publish(make_extension(tmp_path, version="2.0.0", greeting="v2", permissions=["storage"]))
        report = profile.update()
        assert not report.updated and "asks for storage" in report.pending[0]
        assert profile.pending()["hello@example.org"]["new"] == ["storage"]
        assert profile.installed["hello@example.org"]["version"] == "1.1.0"
        assert await (await session.fetch("web+hello://w/")).text() == "v11 from w"
        # The user approves: 2.0.0 runs with storage.
        approved = profile.approve("hello@example.org")
        assert approved.version == "2.0.0" and approved.granted == ["storage"]
        assert await (await session.fetch("web+hello://w/")).text() == "v2 from w"
        assert reg.extensions["hello@example.org"].granted_permissions == {"storage"}


def test_denied_update_keeps_the_old_version(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    store.publish(make_extension(tmp_path, version="2.0.0", host_permissions=["https://api.example.org/*"]))
    profile.update()
    profile.deny("hello@example.org")
    assert profile.installed["hello@example.org"]["version"] == "1.0.0"
    assert not profile.pending()


def test_unsigned_update_to_a_signed_extension_is_refused(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    with pytest.raises(TrustError, match="unsigned update to a signed extension is refused"):
        profile.install_unsigned(make_extension(tmp_path, version="9.0.0"), accept_risk=True)


def test_unsigned_install_with_permissions_needs_a_second_confirmation(profile, tmp_path):
    d = make_extension(tmp_path, permissions=["storage"], host_permissions=["https://api.example.org/*"])
    with pytest.raises(TrustError) as err:
        profile.install_unsigned(d)
    msg = str(err.value)
    assert "unsigned" in msg and "storage" in msg and "https://api.example.org/*" in msg
    assert "--i-accept-the-risk" in msg
    assert profile.installed == {}
    report = profile.install_unsigned(d, accept_risk=True)
    assert report.source == "unsigned, development" and report.warnings
    assert profile.registry().extensions["hello@example.org"].provenance == "unsigned, development"
    # Without permissions, no confirmation is needed.
    plain = make_extension(tmp_path, "plain@example.org", scheme="web+plain")
    assert profile.install_unsigned(plain).warnings == []


def test_uninstall_removes_storage_and_data(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, permissions=["storage"]))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    data = profile.data_dir("hello@example.org")
    data.mkdir(parents=True)
    (data / "x").write_text("x")
    profile.uninstall("hello@example.org")
    assert not data.exists() and profile.installed == {}
    assert not any((profile.path / "extensions").iterdir())
    lines = [json.loads(line)["event"] for line in (profile.path / "audit.log").read_text().splitlines()]
    assert lines == ["trust", "install", "uninstall"]


RELOAD = textwrap.dedent("""
    import asyncio, json, sys
    import protoreg

    async def main():
        profile = protoreg.Profile(sys.argv[1])
        reg = profile.registry()
        out = {"installed": sorted(profile.installed), "problems": profile.problems,
               "grants": profile.grants("hello@example.org")["granted"]}
        async with profile.session(reg) as session:
            out["stored"] = await (await session.fetch("web+hello://world/get")).text()
            resp = await session.fetch(sys.argv[2])
            out["ipfs"] = [resp.status, len(await resp.read())]
        print(json.dumps(out))

    asyncio.run(main())
""")


async def test_a_profile_reloaded_by_a_new_process_keeps_everything(store, profile, tmp_path):
    from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE, ipfs_core, store_for

    store.publish(make_extension(tmp_path, permissions=["storage"]))
    store.publish(IPFS_BUNDLE)
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    profile.install("ipfs@protoreg")
    reg = profile.registry()
    with DEMO_CAR.open("rb") as f:
        report = ipfs_core().car.import_car(f, store_for(reg.extensions["ipfs@protoreg"], profile.path))
    root = ipfs_core().cids.v1_base32(report.roots[0])
    async with profile.session(reg) as session:
        assert await (await session.fetch("web+hello://world/set?v=survives")).text() == "stored"
    out = subprocess.run([sys.executable, "-c", RELOAD, str(profile.path), f"ipfs://{root}/"], cwd=ROOT,
                         capture_output=True, text=True, timeout=90, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["installed"] == ["hello@example.org", "ipfs@protoreg"]
    assert got["problems"] == {} and got["grants"] == ["storage"]
    assert got["stored"] == "survives"
    assert got["ipfs"][0] == 200 and got["ipfs"][1] > 0


def test_profile_is_exported():
    assert protoreg.Profile is Profile


async def test_the_broker_enforces_effective_grants_not_the_manifest(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, permissions=["storage"]))
    profile.trust("alpha", str(store.dir), store.root_json, ceiling="none")
    report = profile.install("hello@example.org")
    assert report.granted == [] and [c.by for c in report.clipped] == ["store alpha"]
    async with profile.session() as session:
        resp = await session.fetch("web+hello://world/set?v=x")
        assert resp.status == 500
        denied = session.audit.records(decision="denied")
        assert denied and "clipped by the ceiling" in denied[0].reason
        assert "protoreg grants hello@example.org" in denied[0].reason
