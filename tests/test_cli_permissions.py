"""`protoreg grants EXT_ID --allow/--deny/--prompt/--revoke P [--expires ...]` and `protoreg audit`: exit codes
0/1/2, readable errors, no traceback; decisions land in the profile; the audit log is queried from the profile."""

from __future__ import annotations

import time

import pytest

from protoreg import Profile
from protoreg.audit import AuditLog
from protoreg.cli import main
from protoreg.permissions import Grantee
from tests.trust_helpers import Store, make_extension

EXT = "hello@example.org"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def profile(tmp_path):
    store = Store(tmp_path / "stores")
    store.publish(make_extension(tmp_path, permissions=["storage"],
                                 host_permissions=["https://api.example.org/*", "https://evil.example/*"]))
    p = Profile(tmp_path / "p")
    p.trust("alpha", str(store.dir), store.root_json, ceiling="storage,https://api.example.org/*")
    p.install(EXT)
    return p


def decision(profile, perm):
    return profile.decisions().decision(Grantee.from_record(EXT, profile.grants(EXT)), perm)


def test_grants_shows_and_changes_decisions(profile, capsys):
    prof = ("--profile", str(profile.path))
    code, out, _ = run(capsys, "grants", EXT, *prof)
    assert code == 0
    assert "storage: allow by the store, never expires (granted by the store)" in out
    assert "https://evil.example/*: deny by the store, never expires (not within the ceiling of store alpha)" in out
    code, out, _ = run(capsys, "grants", EXT, "--deny", "storage", "--expires", "1h", *prof)
    assert code == 0 and "storage for hello@example.org: deny by the user, until" in out
    dec = decision(profile, "storage")
    assert dec.state == "deny" and 3500 < dec.expires - time.time() <= 3600
    assert run(capsys, "grants", EXT, "--prompt", "storage", *prof)[0] == 0
    assert decision(profile, "storage").state == "prompt"
    assert run(capsys, "grants", EXT, "--allow", "storage", "--expires", "session", *prof)[0] == 0
    assert decision(profile, "storage").expires == "session"
    code, out, _ = run(capsys, "grants", EXT, "--revoke", "https://api.example.org/*", *prof)
    assert code == 0 and "revoked https://api.example.org/*" in out
    assert decision(profile, "https://api.example.org/*").state == "deny"
    code, out, _ = run(capsys, "grants", EXT, "--allow", "https://api.example.org/*", "--expires",
                       "2099-01-01T00:00Z", *prof)
    assert code == 0 and "until 2099-01-01 00:00:00 UTC" in out
    assert '"event": "decision"' in (profile.path / "audit.log").read_text()


def test_grants_refuses_beyond_the_ceiling_and_bad_input(profile, capsys):
    prof = ("--profile", str(profile.path))
    code, _, err = run(capsys, "grants", EXT, "--allow", "https://evil.example/*", *prof)
    assert code == 1 and "never exceed the store ceiling" in err and "store alpha" in err
    code, _, err = run(capsys, "grants", EXT, "--allow", "storage", "--expires", "tomorrow", *prof)
    assert code == 1 and "not understood" in err
    code, _, err = run(capsys, "grants", EXT, "--expires", "1h", *prof)
    assert code == 2 and "--expires goes with" in err
    code, _, err = run(capsys, "grants", EXT, "--allow", "storage", "--deny", "storage", *prof)
    assert code == 2 and "not allowed with" in err
    code, _, err = run(capsys, "grants", "nobody@test", "--deny", "storage", *prof)
    assert code == 1 and "not installed" in err
    assert decision(profile, "storage").state == "allow"


def test_audit_queries(profile, capsys):
    prof = ("--profile", str(profile.path))
    assert run(capsys, "audit", *prof)[1].startswith("no capability call has been recorded")
    log = AuditLog(path=profile.path / "audit.sqlite3")
    now = time.time()
    log.record(EXT, "web+hello://a", "storage.set", "k", True, "allowed by the store", permission="storage")
    log.record(EXT, "web+hello://a", "fetch", "https://api.example.org/x", False, "it is denied: because",
               permission="https://api.example.org/*")
    log.record("other@test", "web+o://b", "storage.get", "k", True, permission="storage")
    log._db.execute("UPDATE calls SET time = ? WHERE capability = 'storage.set'", (now - 7200,))
    log.close()
    code, out, _ = run(capsys, "audit", *prof)
    assert code == 0 and len([line for line in out.splitlines() if not line.startswith("    ")]) == 3
    code, out, _ = run(capsys, "audit", "--extension", EXT, "--denied", *prof)
    assert "DENIED" in out and "fetch https://api.example.org/x [https://api.example.org/*]" in out
    assert "    why: it is denied: because" in out and "ALLOWED" not in out
    code, out, _ = run(capsys, "audit", "--permission", "storage", *prof)
    assert out.count("ALLOWED") == 2 and "fetch" not in out
    code, out, _ = run(capsys, "audit", "--since", "1h", *prof)
    assert "storage.set" not in out and "storage.get" in out
    code, out, _ = run(capsys, "audit", "--since", "2001-01-01T00:00Z", "--extension", EXT, *prof)
    assert "storage.set" in out and "UTC" in out
    code, _, err = run(capsys, "audit", "--since", "yesterday", *prof)
    assert code == 2 and "ISO 8601" in err
    code, out, _ = run(capsys, "audit", "--extension", "nobody@test", *prof)
    assert code == 0 and "no matching capability call" in out


def test_help_has_examples(capsys):
    for cmd in ("grants", "audit"):
        code, out, _ = run(capsys, cmd, "--help")
        assert code == 0 and "example: protoreg " + cmd in out
