"""Stores are TUF repositories: real keys, real signatures, real metadata. Untrusted keys, expiry, rollback,
delegation ceilings and id binding are refused or clipped with messages that name the store and the role."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest

from protoreg import Profile, bundles, stores
from protoreg.errors import TrustError
from tests.trust_helpers import Store, make_extension


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "stores")


@pytest.fixture
def profile(tmp_path):
    return Profile(tmp_path / "profile")


def test_install_from_a_store_records_the_signed_hash(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    profile.trust("alpha", str(store.dir), store.root_json)
    report = profile.install("hello@example.org")
    assert report.source == "store alpha" and report.granted == [] and report.clipped == []
    rec = profile.installed["hello@example.org"]
    assert rec["signed"] and rec["store"] == "alpha" and rec["role"] == "targets"
    assert (profile.path / "extensions" / rec["sha256"] / "files" / "handler.py").exists()


def test_a_target_signed_by_an_unknown_key_is_refused(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    # The publisher's tool refuses to sign with a key the role doesn't list...
    intruder = stores.load_private_key(stores.generate_key(tmp_path / "intruder.key")[0])
    with pytest.raises(TrustError, match="not a key of the role 'targets'"):
        store.publish(make_extension(tmp_path, version="2.0.0"), key=intruder)
    # ...and an attacker who writes the metadata directly (and holds the online key) is refused by the client.
    md = stores._load(store.dir, "targets")
    md.signed.version += 1
    md.signatures.clear()
    md.sign(intruder)
    stores._write(store.dir, "targets", md)
    stores._update_snapshot(store.dir, {"targets": md.signed.version}, timedelta(days=1))
    with pytest.raises(TrustError) as err:
        profile._client("alpha").find("hello@example.org")
    msg = str(err.value)
    assert "store 'alpha' (role targets)" in msg and "untrusted signature" in msg
    report = profile.update()
    assert report.errors and "alpha" in report.errors[0]
    assert profile.installed["hello@example.org"]["status"] == "active"  # nothing changed on a refused refresh


def test_expired_metadata_is_refused(store, profile, tmp_path):
    store.publish(make_extension(tmp_path), online_expiry=timedelta(seconds=-60))
    with pytest.raises(TrustError) as err:
        profile.trust("alpha", str(store.dir), store.root_json)
    msg = str(err.value)
    assert "store 'alpha' (role timestamp)" in msg and "expired" in msg and "protoreg store resign" in msg
    assert "alpha" not in profile.stores
    stores.resign_online(store.dir)  # the operator re-signs: trusted again
    profile.trust("alpha", str(store.dir), store.root_json)


def test_rollback_of_store_metadata_is_refused(store, profile, tmp_path):
    store.publish(make_extension(tmp_path))
    old = tmp_path / "old-metadata"
    shutil.copytree(store.dir / "metadata", old)
    store.publish(make_extension(tmp_path, version="1.1.0"))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    # A mirror (or attacker) serves the older, still validly signed and unexpired metadata.
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        shutil.copy(old / name, store.dir / "metadata" / name)
    with pytest.raises(TrustError) as err:
        profile._client("alpha")
    assert "store 'alpha' (role timestamp): rollback" in str(err.value)
    assert profile.installed["hello@example.org"]["version"] == "1.1.0"


def test_an_older_extension_version_is_refused(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, version="2.0.0"))
    profile.trust("alpha", str(store.dir), store.root_json)
    profile.install("hello@example.org")
    store.publish(make_extension(tmp_path, version="1.0.0"))  # the store itself goes back
    report = profile.update()
    assert report.refused and "rollback" in report.refused[0] and "2.0.0 keeps running" in report.refused[0]
    assert profile.installed["hello@example.org"]["version"] == "2.0.0"


def test_child_store_beyond_its_ceiling_is_clipped_and_reported(store, profile, tmp_path):
    child_key, clipped = store.delegate("community", ["storage", "https://*.example.org/*"])
    assert clipped == []
    ext = make_extension(tmp_path, "tool@example.net", permissions=["storage"],
                         host_permissions=["https://api.example.org/*", "https://evil.example/*"])
    path = store.publish(ext, role="community", key=child_key)
    assert path == "community/tool@example.net.protoreg"
    profile.trust("alpha", str(store.dir), store.root_json)
    report = profile.install("tool@example.net")
    assert report.granted == ["storage", "https://api.example.org/*"]
    assert [(c.permission, c.by) for c in report.clipped] == [("https://evil.example/*",
                                                               "store alpha, role community")]
    assert any("clipped: https://evil.example/*" in line and "role community" in line for line in report.lines())
    # The broker sees the effective grants, not the manifest.
    from protoreg.broker import Grants

    ext_obj = profile.registry().extensions["tool@example.net"]
    grants = Grants.from_extension(ext_obj)
    assert grants.permissions == {"storage"}
    assert [p.text for p in grants.hosts] == ["https://api.example.org/*"]


def test_a_child_ceiling_is_clipped_to_its_parents(store, profile, tmp_path):
    child_key, _ = store.delegate("community", ["storage", "https://*.example.org/*"])
    ext = make_extension(tmp_path, "tool@example.net", permissions=["storage"],
                         host_permissions=["https://api.example.org/*"])
    store.publish(ext, role="community", key=child_key)
    profile.trust("alpha", str(store.dir), store.root_json, ceiling="storage")  # the user's ceiling for alpha
    report = profile.install("tool@example.net")
    assert report.granted == ["storage"]
    assert [(c.permission, c.by) for c in report.clipped] == [("https://api.example.org/*", "store alpha")]


def test_a_child_cannot_sign_outside_its_prefix(store, profile, tmp_path):
    child_key, _ = store.delegate("community", ["*"])
    with pytest.raises(TrustError, match="not a key of the role 'targets'"):
        store.publish(make_extension(tmp_path), key=child_key)


def test_a_signature_for_one_id_never_validates_another(store, profile, tmp_path):
    store.publish(make_extension(tmp_path, "a@example.org"))
    # The store (validly) lists a's bundle under b's target path: the signed id and the bundle say "a".
    md = stores._load(store.dir, "targets")
    info = md.signed.targets.pop("a@example.org.protoreg")
    info.path = "b@example.org.protoreg"
    md.signed.targets[info.path] = info
    md.signed.version += 1
    md.signatures.clear()
    md.sign(store.key)
    stores._write(store.dir, "targets", md)
    shutil.copy(store.dir / "targets" / "a@example.org.protoreg", store.dir / "targets" / info.path)
    stores._update_snapshot(store.dir, {"targets": md.signed.version}, timedelta(days=1))
    profile.trust("alpha", str(store.dir), store.root_json)
    with pytest.raises(TrustError, match=r"names the extension 'a@example\.org', not 'b@example\.org'"):
        profile.install("b@example.org")


def test_a_tampered_target_file_is_refused(store, profile, tmp_path):
    path = store.publish(make_extension(tmp_path))
    target = store.dir / "targets" / path
    target.write_bytes(target.read_bytes().replace(b"hello from", b"owned from"))
    profile.trust("alpha", str(store.dir), store.root_json)
    with pytest.raises(TrustError, match=r"store 'alpha'.*hash"):
        profile.install("hello@example.org")
    assert profile.installed == {}


@pytest.mark.parametrize(("ceiling", "perm", "ok"), [
    (["*"], "https://x.org/*", True),
    (["storage"], "storage", True),
    (["storage"], "https://x.org/*", False),
    (["https://*.example.org/*"], "https://api.example.org/v1/*", True),
    (["https://*.example.org/*"], "https://*.example.org/*", True),
    (["https://*.example.org/*"], "https://example.org.evil/*", False),
    (["https://api.example.org/*"], "https://*.example.org/*", False),
    (["https://api.example.org/v1/*"], "https://api.example.org/*", False),
    (["*://*/*"], "<all_urls>", True),
    (["https://*/*"], "<all_urls>", False),
    (["https://*/*"], "http://a.org/*", False),
])
def test_ceiling_coverage_is_conservative(ceiling, perm, ok):
    assert stores.covers(ceiling, perm) is ok


def test_bundle_bytes_are_what_the_store_signed(store, tmp_path):
    ext = make_extension(tmp_path)
    path = store.publish(ext)
    assert (store.dir / "targets" / path).read_bytes() == bundles.pack(ext)


def test_a_store_served_over_http(store, profile, tmp_path):
    import functools
    import http.server
    import threading

    store.publish(make_extension(tmp_path))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(store.dir))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        profile.trust("alpha", url, store.root_json)
        assert profile.install("hello@example.org").source == "store alpha"
        store.revoke("hello@example.org")
        assert profile.update().revoked == ["hello@example.org: revoked by store alpha"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_grandchild_is_clipped_by_every_ceiling_on_the_chain(store, profile, tmp_path):
    child_key, _ = store.delegate("community", ["storage", "https://*.example.org/*"])
    store.publish(make_extension(tmp_path, "seed@example.net", scheme="web+seed"), role="community", key=child_key)
    priv, pub = stores.generate_key(tmp_path / "grandchild.key")
    clipped = stores.delegate(store.dir, "team", stores.load_public_key(pub), ["storage", "https://*/*"], child_key,
                              parent="community")
    assert [(c.permission, c.by) for c in clipped] == [("https://*/*", "community")]
    ext = make_extension(tmp_path, "deep@example.net", permissions=["storage"],
                         host_permissions=["https://api.example.org/*", "https://other.example/*"])
    path = store.publish(ext, role="team", key=stores.load_private_key(priv))
    assert path == "community/team/deep@example.net.protoreg"
    profile.trust("alpha", str(store.dir), store.root_json)
    report = profile.install("deep@example.net")
    # team's recorded ceiling is "storage" (its "https://*/*" was clipped by community at delegation time)
    assert report.granted == ["storage"]
    assert [(c.permission, c.by) for c in report.clipped] == [
        ("https://other.example/*", "store alpha, role community"),
        ("https://api.example.org/*", "store alpha, role team")]
