"""Registry: install/uninstall/lookup, read-only views, the conflict policy, read-once code, templates."""

from __future__ import annotations

import json

import pytest

import protoreg
from protoreg.errors import InstallError, ManifestError, UnknownScheme


def make_ext(root, ext_id, schemes, *, script="async def handleRequest(r):\n    pass\n", template=None):
    root.mkdir(parents=True, exist_ok=True)
    handlers = []
    for s in schemes:
        h = {"protocol": s, "name": s}
        if template:
            h["uriTemplate"] = template
        else:
            h["uriHandlerScript"] = "handler.py"
        handlers.append(h)
    (root / "manifest.json").write_text(json.dumps({
        "name": ext_id, "version": "1.0", "browser_specific_settings": {"gecko": {"id": ext_id}},
        "protocol_handlers": handlers}))
    (root / "handler.py").write_text(script)
    (root / "lib").mkdir(exist_ok=True)
    (root / "lib" / "helper.py").write_text("X = 1\n")
    return root


def test_install_lookup_uninstall(tmp_path):
    reg = protoreg.Registry()
    ext = reg.install(make_ext(tmp_path / "a", "a@x", ["web+a", "dat"]))
    assert reg.lookup("web+a").extension is ext
    assert reg.lookup("dat").handler.protocol == "dat"
    assert set(reg.schemes) == {"web+a", "dat"}
    assert reg.uninstall("a@x") is ext
    with pytest.raises(UnknownScheme, match="no installed extension handles the scheme 'web\\+a'"):
        reg.lookup("web+a")


def test_views_are_read_only(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    with pytest.raises(TypeError):
        reg.extensions["b"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        reg.schemes["web+b"] = None  # type: ignore[index]


def test_first_installed_keeps_a_scheme_and_the_conflict_is_reported(tmp_path, caplog):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+s"]))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+s"]))
    assert reg.lookup("web+s").extension.id == "a@x"
    (conflict,) = reg.conflicts
    assert (conflict.scheme, conflict.active, conflict.waiting) == ("web+s", "a@x", "b@x")
    assert "prefer=True" in caplog.text


def test_prefer_gives_the_newcomer_the_scheme_and_uninstall_releases_it_to_the_next(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+s"]))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+s"]), prefer=True)
    assert reg.lookup("web+s").extension.id == "b@x"
    assert reg.conflicts[0].reason == "installed with prefer=True"
    reg.uninstall("b@x")
    assert reg.lookup("web+s").extension.id == "a@x"


def test_reinstalling_the_same_bundle_is_a_no_op_and_a_different_one_is_refused(tmp_path):
    reg = protoreg.Registry()
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    first = reg.install(path)
    assert reg.install(path) is first
    (path / "handler.py").write_text("async def handleRequest(r):\n    return 1\n")
    with pytest.raises(InstallError, match=r"already installed .* reg.uninstall\('a@x'\) first"):
        reg.install(path)


def test_code_is_read_once_at_install_and_disk_changes_do_not_leak_in(tmp_path):
    reg = protoreg.Registry()
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    ext = reg.install(path)
    before = dict(ext.files)
    (path / "handler.py").write_text("evil = True\n")
    assert dict(ext.files) == before
    assert set(ext.files) == {"handler.py", "lib/helper.py"}
    assert len(ext.digest) == 64


def test_bad_manifest_raises_manifest_error_and_installs_nothing(tmp_path):
    reg = protoreg.Registry()
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError):
        reg.install(tmp_path)
    assert not reg.extensions


def test_template_url_percent_encodes_like_encode_uri_component(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+t"], template="https://gw.example/open?u=%s"))
    entry = reg.lookup("web+t")
    assert entry.template_url("web+t://h/a b?c=d&e") == \
        "https://gw.example/open?u=web%2Bt%3A%2F%2Fh%2Fa%20b%3Fc%3Dd%26e"


def test_policy_queries_use_the_installed_schemes(tmp_path):
    reg = protoreg.Registry()
    assert str(reg.resolve("web+a://h:1/x")) == "web+a://h:1/x"  # not registered yet: non-special
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    data = json.loads((path / "manifest.json").read_text())
    data["protocol_handlers"][0]["uriIsTrustworthy"] = True
    (path / "manifest.json").write_text(json.dumps(data))
    reg.install(path)
    assert str(reg.resolve("../y", base="web+a://h:1/x/z")) == "web+a://h/y"
    assert reg.origin("web+a://h/x").serialize() == "web+a://h"
    assert reg.is_potentially_trustworthy("web+a://h/")
    assert reg.is_secure_context(["web+a://h/", "https://top.example/"])


def test_subscribers_hear_installs_and_uninstalls(tmp_path):
    reg = protoreg.Registry()
    events = []
    unsubscribe = reg.subscribe(lambda event, ext: events.append((event, ext.id)))
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    reg.uninstall("a@x")
    unsubscribe()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    assert events == [("installed", "a@x"), ("uninstalled", "a@x")]


def test_uninstalling_an_unknown_id_is_explained():
    with pytest.raises(InstallError, match="no extension with id 'nope' is installed"):
        protoreg.Registry().uninstall("nope")
