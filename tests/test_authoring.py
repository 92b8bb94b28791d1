"""The author's loop: protoreg new (every template passes check --strict and its own test), protoreg pack
(reproducible, every file's hash, accepted by store publish and install), and the lint rules of protoreg check."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protoreg import bundles
from protoreg.cli import main
from protoreg.lint import image_kind
from protoreg.testing import write_extension

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- new -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", ["basic", "streaming", "sandboxed"])
def test_new_writes_an_extension_that_checks_clean_and_whose_test_passes(tmp_path, capsys, template):
    ext = tmp_path / "my-ext"
    code, out, _ = run(capsys, "new", str(ext), "--scheme", "web+mine", "--template", template)
    assert code == 0 and "tests/test_extension.py" in out
    assert {p.relative_to(ext).as_posix() for p in ext.rglob("*") if p.is_file()} == {
        "manifest.json", "handler.py", "icon.svg", "README.md", "tests/test_extension.py"}
    assert image_kind((ext / "icon.svg").read_bytes()) == "svg"
    code, out, err = run(capsys, "check", "--strict", str(ext))
    assert code == 0 and ": OK: " in out and err == "", err
    manifest = json.loads((ext / "manifest.json").read_text())
    if template == "sandboxed":
        assert manifest["permissions"] == [] == manifest["host_permissions"]
        assert "default-src 'none'" in manifest["content_security_policy"]["protocol_pages"]
    # the generated test runs as a user would run it: pytest in the extension directory, plugin from the entry point
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=ext,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_new_refuses_bad_schemes_templates_and_non_empty_directories(tmp_path, capsys):
    code, _, err = run(capsys, "new", str(tmp_path / "a"), "--scheme", "foo")
    assert code == 1 and "web+ or ext+" in err
    assert run(capsys, "new", str(tmp_path / "a"), "--scheme", "web+a", "--template", "nope")[0] == 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("keep me")
    code, _, err = run(capsys, "new", str(tmp_path / "b"), "--scheme", "web+b")
    assert code == 1 and "not an empty directory" in err and (tmp_path / "b" / "x").read_text() == "keep me"


# -- pack ------------------------------------------------------------------------------------------------------
def test_pack_is_reproducible_lists_every_hash_and_store_publish_and_install_accept_it(tmp_path, capsys,
                                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(capsys, "new", "notes", "--scheme", "web+notes")
    code, out, _ = run(capsys, "pack", "notes", "-o", "a.protoreg")
    assert code == 0
    for rel in ("manifest.json", "handler.py", "icon.svg", "README.md", "tests/test_extension.py"):
        digest = hashlib.sha256((tmp_path / "notes" / rel).read_bytes()).hexdigest()
        assert f"{digest}" in out and out.split(digest)[1].split("\n")[0].endswith(rel)
    os.utime(tmp_path / "notes" / "handler.py", (1, 1))  # times never count
    assert run(capsys, "pack", "notes", "-o", "b.protoreg")[0] == 0
    a, b = (tmp_path / "a.protoreg").read_bytes(), (tmp_path / "b.protoreg").read_bytes()
    assert a == b and bundles.parse(a).id == "notes@example.org"
    assert f"sha256 {hashlib.sha256(a).hexdigest()}" in out
    # default name, and a broken manifest is a readable error
    assert run(capsys, "pack", "notes")[0] == 0 and (tmp_path / "notes-0.1.0.protoreg").is_file()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{}")
    code, _, err = run(capsys, "pack", "bad")
    assert code == 1 and "problems found" in err
    # a store publishes the file; a profile installs it from there
    for argv in (["keygen", "k.key"], ["store", "init", "store", "--key", "k.key"],
                 ["store", "publish", "store", "a.protoreg", "--key", "k.key"],
                 ["trust", "add", "s", "store", "--root", "store/metadata/1.root.json", "--profile", "p"],
                 ["install", "notes@example.org", "--from", "s", "--profile", "p"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv, out, err)
    assert "installed notes@example.org 0.1.0 from store s" in out
    code, out, _ = run(capsys, "fetch", "web+notes://x/", "--profile", "p")
    assert code == 0 and "Hello from web+notes://x/" in out
    # the file itself: refused as a signed install (nobody signed it), accepted for development with --unsigned
    code, _, err = run(capsys, "install", "a.protoreg", "--profile", "dev")
    assert code == 2 and "is a bundle file, and nobody signed it" in err
    code, out, _ = run(capsys, "install", "--unsigned", "a.protoreg", "--profile", "dev")
    assert code == 0 and "notes@example.org 0.1.0" in out
    (tmp_path / "broken.protoreg").write_bytes(a[:-5])
    code, _, err = run(capsys, "install", "--unsigned", "broken.protoreg", "--profile", "dev2")
    assert code == 1 and "broken.protoreg" in err


# -- lint rules ------------------------------------------------------------------------------------------------
def check(capsys, root: Path, *flags: str) -> tuple[int, str, str]:
    return run(capsys, "check", *flags, str(root))


def test_unused_grants_are_warnings_and_strict_fails_on_them(tmp_path, capsys):
    root = write_extension(tmp_path / "e", scheme="web+e", permissions=["storage"],
                           host_permissions=["https://api.example.org/*", "https://used.example.org/*"], script="""
        from protoreg import Response, runtime
        async def handleRequest(request):
            r = await runtime.fetch("https://used.example.org/x")
            return Response(r.body)
    """)
    code, out, err = check(capsys, root)
    assert code == 0 and "OK with 2 warnings" in out
    assert 'warning [unused-grant] manifest.json permissions: the "storage" permission is granted' in err
    assert "https://api.example.org/* is granted but no runtime.fetch call fetches a URL it matches" in err
    assert "used.example.org" not in err and "Fix: remove" in err and "Why: every grant" in err
    assert check(capsys, root, "--strict")[0] == 1


def test_computed_fetch_urls_make_no_unused_host_warning(tmp_path, capsys):
    root = write_extension(tmp_path / "e", scheme="web+e", host_permissions=["https://api.example.org/*"], script="""
        from protoreg import Response, runtime
        async def handleRequest(request):
            return Response((await runtime.fetch("https://api.example.org" + request.url.path)).body)
    """)
    code, _, err = check(capsys, root, "--strict")
    assert code == 0 and err == ""


def test_trustworthy_handler_fetching_plain_http_is_an_error(tmp_path, capsys):
    script = """
        from protoreg import Response, runtime
        async def handleRequest(request):
            r = await runtime.fetch("http://cdn.example.org/page")
            await runtime.fetch("http://127.0.0.1:5001/ok")
            return Response(r.body)
    """
    root = write_extension(tmp_path / "e", scheme="web+e", trustworthy=True, script=script,
                           host_permissions=["http://cdn.example.org/*", "http://127.0.0.1/*"])
    code, out, err = check(capsys, root)
    assert code == 1 and "problems found" in out
    assert "error [trustworthy-over-http] handler.py:4: fetches http://cdn.example.org/page over plain http" in err
    assert 'http://cdn.example.org/* grants plain-http fetches' in err and 'grant "https://cdn.example.org/*"' in err
    assert "127.0.0.1" not in err  # loopback http is potentially trustworthy
    untrusted = write_extension(tmp_path / "u", scheme="web+u", trustworthy=False, script=script,
                                host_permissions=["http://cdn.example.org/*", "http://127.0.0.1/*"])
    assert check(capsys, untrusted)[0] == 0


def test_icons_must_be_images_by_content(tmp_path, capsys):
    root = write_extension(tmp_path / "e", scheme="web+e", script="async def handleRequest(r): ...",
                           files={"fake.png": "not a png at all", "real.svg": "<svg xmlns='x'/>"},
                           manifest_extra={"icons": {"48": "fake.png", "96": "real.svg", "128": "gone.png"}})
    (root / "real.png").write_bytes(PNG)
    m = json.loads((root / "manifest.json").read_text())
    m["protocol_handlers"][0]["uriIcon"] = "real.png"
    (root / "manifest.json").write_text(json.dumps(m))
    code, _, err = check(capsys, root)
    assert code == 1
    assert "error [icon-not-image] manifest.json icons['48']: fake.png is not an image (its content starts with" in err
    assert "icons['128']: the icon gone.png can't be read" in err
    assert "real.svg" not in err and "real.png" not in err
    assert [image_kind(x) for x in (PNG, b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"<?xml?><svg/>",
                                    b"<html>")] == ["png", "jpeg", "gif", "webp", "svg", None]


def test_csp_directives_the_baseline_makes_moot_are_warnings(tmp_path, capsys):
    root = write_extension(tmp_path / "e", scheme="web+e", script="async def handleRequest(r): ...",
                           csp="object-src 'self'; base-uri 'self' https:; frame-ancestors 'none'; script-src 'self'")
    code, out, err = check(capsys, root)
    assert code == 0 and "OK with 2 warnings" in out
    assert "warning [csp-moot] manifest.json content_security_policy.protocol_pages: object-src 'self' changes" in err
    assert "base-uri 'self' https: changes nothing" in err
    assert "frame-ancestors" not in err and "script-src" not in err  # stricter than the baseline / not in it
    assert check(capsys, root, "--strict")[0] == 1


def test_every_bundled_extension_passes_check(capsys):
    for manifest in [*ROOT.glob("examples/*/manifest.json"), *ROOT.glob("handlers/*/manifest.json")]:
        code, out, err = check(capsys, manifest.parent)
        assert code == 0, (manifest, out, err)
