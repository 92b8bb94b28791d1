"""The trust CLI: keygen, store init/delegate/publish/revoke, trust add, install, update, list, uninstall,
grants; --help with an example; exit codes 0/1/2; no traceback. The docs/trust.md walk-through runs as written."""

from __future__ import annotations

import re
import shlex
import shutil
import stat
from pathlib import Path

import pytest

from protoreg.cli import main
from tests.trust_helpers import make_extension

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_the_walkthrough_in_docs_trust_md_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "trust.md").read_text()
    block = re.search(r"<!-- walkthrough -->\s*```sh\n(.*?)```", text, re.S).group(1)
    commands = [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ ")]
    assert len(commands) == 10
    shutil.copytree(ROOT / "examples" / "hello-scheme", tmp_path / "examples" / "hello-scheme")
    monkeypatch.chdir(tmp_path)
    outputs = []
    for argv in commands:
        assert argv[0] == "protoreg"
        code, out, err = run(capsys, *argv[1:])
        assert code == 0, (argv, out, err)
        outputs.append(out + err)
    key = tmp_path / "tmp-trust" / "store.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and (tmp_path / "tmp-trust" / "store.key.pub").exists()
    assert outputs[1].splitlines()[0] == "tmp-trust/store/metadata/1.root.json"
    assert "installed hello@example.org 1.0.0 from store demo" in outputs[4]
    assert "Hello from web+hello://world/" in outputs[6]
    assert "REVOKED hello@example.org: revoked by store demo" in outputs[8]
    assert "DISABLED (revoked by store demo)" in outputs[9]
    code, out, err = run(capsys, "fetch", "web+hello://world/", "--profile", "./tmp-trust/profile")
    assert code == 1 and "revoked by store demo" in err


def test_delegation_ceiling_and_grants_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ext = make_extension(tmp_path, "tool@example.net", permissions=["storage"],
                         host_permissions=["https://api.example.org/*", "https://evil.example/*"])
    assert run(capsys, "keygen", "top.key")[0] == 0
    assert run(capsys, "keygen", "child.key")[0] == 0
    assert run(capsys, "store", "init", "s", "--key", "top.key")[0] == 0
    code, out, _ = run(capsys, "store", "delegate", "s", "community", "--key", "child.key.pub", "--ceiling",
                       "storage,https://*.example.org/*", "--signing-key", "top.key")
    assert code == 0 and "delegated community/" in out
    assert run(capsys, "store", "publish", "s", str(ext), "--role", "community", "--key", "child.key")[0] == 0
    assert run(capsys, "trust", "add", "a", "s", "--root", "s/metadata/1.root.json", "--profile", "p")[0] == 0
    code, out, _ = run(capsys, "install", "tool@example.net", "--profile", "p")
    assert code == 0
    assert "granted: storage, https://api.example.org/*" in out
    assert "clipped: https://evil.example/* (not within the ceiling of store a, role community)" in out
    code, out, _ = run(capsys, "grants", "tool@example.net", "--profile", "p")
    assert code == 0 and "clipped:   https://evil.example/* (by store a, role community)" in out
    # the child key can't publish outside its prefix; a wrong key is one readable line
    code, _, err = run(capsys, "store", "publish", "s", str(ext), "--key", "child.key")
    assert code == 1 and "not a key of the role 'targets'" in err


def test_unsigned_install_needs_the_flag_and_consent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ext = make_extension(tmp_path, permissions=["storage"])
    code, _, err = run(capsys, "install", str(ext), "--profile", "p")
    assert code == 2 and "--unsigned" in err
    code, _, err = run(capsys, "install", "--unsigned", str(ext), "--profile", "p")
    assert code == 1 and "WARNING" in err and "storage" in err and "--i-accept-the-risk" in err
    code, out, err = run(capsys, "install", "--unsigned", str(ext), "--i-accept-the-risk", "--profile", "p")
    assert code == 0 and "unsigned, development" in out and "warning" in err
    code, out, _ = run(capsys, "list", "--profile", "p")
    assert code == 0 and "hello@example.org 1.0.0  unsigned, development  active" in out
    assert run(capsys, "uninstall", "hello@example.org", "--profile", "p")[0] == 0
    code, _, err = run(capsys, "uninstall", "hello@example.org", "--profile", "p")
    assert code == 1 and "not installed" in err


def test_update_pending_then_approve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run(capsys, "keygen", "k")
    run(capsys, "store", "init", "s", "--key", "k")
    run(capsys, "store", "publish", "s", str(make_extension(tmp_path)), "--key", "k")
    run(capsys, "trust", "add", "a", "s", "--root", "s/metadata/1.root.json", "--profile", "p")
    assert run(capsys, "install", "hello@example.org", "--profile", "p")[0] == 0
    run(capsys, "store", "publish", "s", str(make_extension(tmp_path, version="2.0.0", permissions=["storage"])),
        "--key", "k")
    code, out, _ = run(capsys, "update", "--profile", "p")
    assert code == 0 and "waiting for your decision: hello@example.org 2.0.0 asks for storage" in out
    code, out, _ = run(capsys, "list", "--profile", "p")
    assert "hello@example.org 1.0.0" in out and "update 2.0.0 waits for your decision" in out
    code, out, _ = run(capsys, "update", "--approve", "hello@example.org", "--profile", "p")
    assert code == 0 and "installed hello@example.org 2.0.0" in out and "granted: storage" in out


def test_errors_are_one_line_and_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "store", "init", "s", "--key", "missing.key")
    assert code == 1 and "missing.key" in err
    code, _, err = run(capsys, "install", "x@y", "--profile", "p")
    assert code == 1 and "no store is trusted yet" in err
    code, _, err = run(capsys, "trust", "add", "a", "nowhere", "--root", "r.json", "--profile", "p")
    assert code == 1
    assert run(capsys, "keygen")[0] == 2
    run(capsys, "keygen", "k")
    code, _, err = run(capsys, "keygen", "k")
    assert code == 1 and "refusing to overwrite" in err


@pytest.mark.parametrize("argv", [
    ["keygen"], ["store", "init"], ["store", "delegate"], ["store", "publish"], ["store", "revoke"],
    ["store", "resign"], ["trust", "add"], ["install"], ["update"], ["list"], ["uninstall"], ["grants"]])
def test_every_command_has_help_with_an_example(argv, capsys):
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example: protoreg" in out
    if argv[0] not in ("keygen", "store"):
        assert "--profile" in out
