"""Registry: install/uninstall/lookup, read-only views, the conflict policy, read-once code, templates."""

from __future__ import annotations

import json
import logging
import os
from types import MappingProxyType

import pytest
from yarl import URL

import protoreg
from protoreg import registry as registry_module
from protoreg.errors import InstallError, ManifestError, ProtoregError, UnknownScheme


def make_ext(root, ext_id, schemes, *, script="async def handleRequest(r):\n    pass\n", template=None,
             trustworthy=False):
    root.mkdir(parents=True, exist_ok=True)
    handlers = []
    for s in schemes:
        h = {"protocol": s, "name": s, "uriIsTrustworthy": trustworthy}
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


# -- install / lookup / uninstall -------------------------------------------------------------------------------
def test_install_returns_the_extension_and_lookup_finds_each_scheme(tmp_path):
    reg = protoreg.Registry()
    ext = reg.install(make_ext(tmp_path / "a", "a@x", ["web+a", "dat"]))
    assert (ext.id, ext.name, ext.version, ext.root) == ("a@x", "a@x", "1.0", (tmp_path / "a").resolve())
    assert ext.manifest.protocol_handlers[0].protocol == "web+a"
    entry = reg.lookup("web+a")
    assert entry.extension is ext and entry.scheme == "web+a" and entry.handler.uriHandlerScript == "handler.py"
    assert reg.lookup("dat").handler.protocol == "dat"
    assert reg.lookup("WEB+A") is entry  # schemes are case-insensitive, as in URLs
    assert set(reg.schemes) == {"web+a", "dat"} and set(reg.extensions) == {"a@x"}


def test_uninstall_removes_the_extension_and_its_schemes(tmp_path):
    reg = protoreg.Registry()
    ext = reg.install(make_ext(tmp_path / "a", "a@x", ["web+a", "dat"]))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+b"]))
    assert reg.uninstall("a@x") is ext
    assert set(reg.schemes) == {"web+b"} and set(reg.extensions) == {"b@x"}
    with pytest.raises(UnknownScheme, match=r"no installed extension handles the scheme 'web\+a'") as info:
        reg.lookup("web+a")
    assert info.value.known == ("web+b",) and isinstance(info.value, LookupError)


def test_lookup_on_an_empty_registry_lists_no_schemes():
    with pytest.raises(UnknownScheme, match=r"registered schemes: none\)"):
        protoreg.Registry().lookup("ipfs")


def test_uninstalling_an_unknown_id_is_explained(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    with pytest.raises(InstallError, match=r"no extension with id 'nope' is installed \(installed: a@x\)"):
        reg.uninstall("nope")


def test_a_bad_manifest_raises_manifest_error_and_installs_nothing(tmp_path):
    reg = protoreg.Registry()
    events = []
    reg.subscribe(lambda event, ext: events.append(event))
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ManifestError) as info:
        reg.install(tmp_path)
    assert {p.path for p in info.value.problems} == {"name", "version", "protocol_handlers"}
    assert not reg.extensions and not reg.schemes and events == []


def test_registries_are_independent_objects(tmp_path):
    one, two = protoreg.Registry(), protoreg.Registry()
    one.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    assert "web+a" in one.schemes and not two.schemes


# -- read-only views --------------------------------------------------------------------------------------------
def test_views_are_read_only_and_live(tmp_path):
    reg = protoreg.Registry()
    assert isinstance(reg.extensions, MappingProxyType) and isinstance(reg.schemes, MappingProxyType)
    extensions, schemes = reg.extensions, reg.schemes
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    assert "a@x" in extensions and "web+a" in schemes  # the same view sees later installs
    with pytest.raises(TypeError):
        reg.extensions["b"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        reg.schemes["web+b"] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        del reg.schemes["web+a"]  # type: ignore[attr-defined]
    assert isinstance(reg.conflicts, tuple)
    ext = reg.extensions["a@x"]
    with pytest.raises(TypeError):
        ext.files["handler.py"] = b"evil"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ext.digest = "0" * 64  # type: ignore[misc]


# -- conflicts --------------------------------------------------------------------------------------------------
def test_first_installed_keeps_a_scheme_and_the_conflict_is_reported(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="protoreg.registry")
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+s"]))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+s", "web+b"]))
    assert reg.lookup("web+s").extension.id == "a@x"
    assert reg.lookup("web+b").extension.id == "b@x"  # its other schemes are served
    (conflict,) = reg.conflicts
    assert (conflict.scheme, conflict.active, conflict.waiting) == ("web+s", "a@x", "b@x")
    assert "prefer=True" in conflict.reason
    (record,) = [r for r in caplog.records if r.name == "protoreg.registry"]
    assert record.levelno == logging.WARNING and "scheme 'web+s': a@x serves it, b@x waits" in record.getMessage()


def test_prefer_gives_the_newcomer_the_scheme_and_uninstall_releases_it_to_the_next(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+s"]))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+s"]), prefer=True)
    assert reg.lookup("web+s").extension.id == "b@x"
    (conflict,) = reg.conflicts
    assert (conflict.active, conflict.waiting, conflict.reason) == ("b@x", "a@x", "installed with prefer=True")
    reg.uninstall("b@x")
    assert reg.lookup("web+s").extension.id == "a@x"


def test_uninstall_releases_to_the_next_claimant_in_install_order(tmp_path):
    reg = protoreg.Registry()
    for name in ("a", "b", "c"):
        reg.install(make_ext(tmp_path / name, f"{name}@x", ["web+s"]))
    assert len(reg.conflicts) == 2
    reg.uninstall("b@x")  # a waiting claimant leaves: nothing changes for the active one
    assert reg.lookup("web+s").extension.id == "a@x"
    reg.uninstall("a@x")
    assert reg.lookup("web+s").extension.id == "c@x"
    reg.uninstall("c@x")
    assert "web+s" not in reg.schemes


def test_a_prefer_install_without_a_rival_records_no_conflict(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+s"]), prefer=True)
    assert reg.conflicts == ()


# -- installing the same id twice -------------------------------------------------------------------------------
def test_reinstalling_the_same_bundle_is_a_silent_no_op(tmp_path):
    reg = protoreg.Registry()
    events = []
    reg.subscribe(lambda event, ext: events.append(event))
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    first = reg.install(path)
    assert reg.install(path) is first
    assert events == ["installed"] and reg.conflicts == ()


def test_the_same_id_with_other_code_or_manifest_is_refused(tmp_path):
    reg = protoreg.Registry()
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    reg.install(path)
    (path / "handler.py").write_text("async def handleRequest(r):\n    return 1\n")
    with pytest.raises(InstallError, match=r"already installed .* reg.uninstall\('a@x'\) first"):
        reg.install(path)
    make_ext(tmp_path / "a", "a@x", ["web+a"], trustworthy=True)  # same code, manifest changed
    with pytest.raises(InstallError, match="already installed"):
        reg.install(path)
    with pytest.raises(InstallError, match="already installed"):
        reg.install(make_ext(tmp_path / "copy", "a@x", ["web+a"]))  # same code from another directory
    assert reg.lookup("web+a").trustworthy is False


# -- code read once ---------------------------------------------------------------------------------------------
def test_code_is_read_once_at_install_and_disk_changes_do_not_leak_in(tmp_path):
    reg = protoreg.Registry()
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    ext = reg.install(path)
    before, digest = dict(ext.files), ext.digest
    (path / "handler.py").write_text("evil = True\n")
    (path / "lib" / "helper.py").unlink()
    (path / "new.py").write_text("x = 2\n")
    assert dict(ext.files) == before and ext.digest == digest
    assert ext.files["handler.py"] == b"async def handleRequest(r):\n    pass\n"
    assert reg.lookup("web+a").extension.files["handler.py"] == before["handler.py"]


def test_files_hold_every_python_file_and_skip_caches_hidden_dirs_and_assets(tmp_path):
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    for rel in ("__pycache__/handler.cpython-311.py", ".git/hook.py", "lib/__pycache__/x.py"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("x = 1\n")
    (path / "page.html").write_text("<p>")
    ext = protoreg.Registry().install(path)
    assert set(ext.files) == {"handler.py", "lib/helper.py"}


def test_the_digest_is_the_bundle_identity(tmp_path):
    a = protoreg.Registry().install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    same = protoreg.Registry().install(make_ext(tmp_path / "b", "b@x", ["web+b"]))
    other = protoreg.Registry().install(make_ext(tmp_path / "c", "c@x", ["web+c"], script="X = 2\n"))
    assert len(a.digest) == 64 and a.digest == same.digest != other.digest


def test_a_python_symlink_out_of_the_bundle_is_refused_at_install(tmp_path):
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    (tmp_path / "secret.py").write_text("TOKEN = 1\n")
    os.symlink(tmp_path / "secret.py", path / "lib" / "leak.py")
    reg = protoreg.Registry()
    with pytest.raises(InstallError, match=r"lib/leak\.py .* symlink pointing outside"):
        reg.install(path)
    assert not reg.extensions


def test_a_python_file_that_is_not_regular_is_refused(tmp_path):
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    os.mkfifo(path / "lib" / "pipe.py")
    with pytest.raises(InstallError, match=r"lib/pipe\.py is not a regular file"):
        protoreg.Registry().install(path)


def test_bundle_limits_are_clear_errors(tmp_path, monkeypatch):
    path = make_ext(tmp_path / "a", "a@x", ["web+a"])
    monkeypatch.setattr(registry_module, "MAX_FILES", 1)
    with pytest.raises(InstallError, match="more than 1 Python files"):
        protoreg.Registry().install(path)
    monkeypatch.setattr(registry_module, "MAX_FILES", 100)
    monkeypatch.setattr(registry_module, "MAX_BYTES", 10)
    with pytest.raises(InstallError, match="Python code is larger than"):
        protoreg.Registry().install(path)
    monkeypatch.setattr(registry_module, "MAX_BYTES", 10**6)
    monkeypatch.setattr(registry_module, "MAX_ENTRIES", 2)
    with pytest.raises(InstallError, match="more than 2 files and directories"):
        protoreg.Registry().install(path)
    assert issubclass(InstallError, ProtoregError)


# -- scheme entries ---------------------------------------------------------------------------------------------
def test_template_url_percent_encodes_like_encode_uri_component(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+t"], template="https://gw.example/open?u=%s&again=%s"))
    entry = reg.lookup("web+t")
    assert entry.template_url("web+t://h/a b?c=d&e#f") == \
        "https://gw.example/open?u=web%2Bt%3A%2F%2Fh%2Fa%20b%3Fc%3Dd%26e%23f&again=%s"
    assert entry.template_url(URL("web+t://h/é")) == "https://gw.example/open?u=web%2Bt%3A%2F%2Fh%2F%25C3%25A9&again=%s"
    assert entry.template_url("web+t://h/-_.!~*'()") == "https://gw.example/open?u=web%2Bt%3A%2F%2Fh%2F-_.!~*'()&again=%s"


def test_template_url_is_none_without_a_template_and_trust_follows_the_handler(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"], trustworthy=True))
    entry = reg.lookup("web+a")
    assert entry.template_url("web+a://h/") is None
    assert entry.trustworthy is True


def test_template_url_encodes_non_ascii_as_utf8(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+t"], template="https://gw.example/%s"))
    assert reg.lookup("web+t").template_url("web+t://h/é") == "https://gw.example/web%2Bt%3A%2F%2Fh%2F%C3%A9"


# -- policy queries delegate with the installed schemes ---------------------------------------------------------
def test_policy_queries_use_the_installed_schemes(tmp_path):
    reg = protoreg.Registry()
    assert str(reg.resolve("web+a://h:1/x")) == "web+a://h:1/x"  # not registered yet: non-special
    assert reg.origin("web+a://h/x").is_opaque
    assert not reg.is_potentially_trustworthy("web+a://h/")
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"], trustworthy=True))
    reg.install(make_ext(tmp_path / "b", "b@x", ["web+b"]))
    assert str(reg.resolve("../y", base="web+a://h:1/x/z")) == "web+a://h/y"
    assert reg.origin("web+a://h/x").serialize() == "web+a://h"
    assert reg.origin(URL("web+b://h/x")).serialize() == "web+b://h"
    assert reg.is_potentially_trustworthy("web+a://h/")
    assert not reg.is_potentially_trustworthy("web+b://h/")
    assert reg.is_potentially_trustworthy(reg.origin("web+a://h/"))
    assert reg.is_secure_context(["web+a://h/", "https://top.example/"])
    assert not reg.is_secure_context(["web+a://h/", "web+b://h/"])
    reg.uninstall("a@x")  # the cached resolutions follow the registry
    assert str(reg.resolve("web+a://h:1/x")) == "web+a://h:1/x"
    assert not reg.is_potentially_trustworthy("web+a://h/")


def test_resolve_errors_are_invalid_url(tmp_path):
    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    with pytest.raises(protoreg.InvalidURL):
        reg.resolve("web+a://")


# -- events -----------------------------------------------------------------------------------------------------
def test_subscribers_hear_installs_and_uninstalls_until_they_unsubscribe(tmp_path):
    reg = protoreg.Registry()
    events = []
    unsubscribe = reg.subscribe(lambda event, ext: events.append((event, ext.id)))
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    reg.uninstall("a@x")
    unsubscribe()
    unsubscribe()  # twice is harmless
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    assert events == [("installed", "a@x"), ("uninstalled", "a@x")]


def test_a_failing_subscriber_is_logged_and_does_not_stop_the_others(tmp_path, caplog):
    reg = protoreg.Registry()
    heard = []

    def broken(event, ext):
        raise RuntimeError("boom")

    reg.subscribe(broken)
    reg.subscribe(lambda event, ext: heard.append(event))
    reg.install(make_ext(tmp_path / "a", "a@x", ["web+a"]))
    assert heard == ["installed"] and "a@x" in reg.extensions
    assert "listener" in caplog.text and "boom" in caplog.text


def test_origins_of_a_registered_scheme_are_built_once_per_origin_and_equal_the_general_algorithm(tmp_path):
    from protoreg.policy.origins import origin_of

    reg = protoreg.Registry()
    reg.install(make_ext(tmp_path / "a", "a@test", ["web+a"]))
    first = reg.origin(URL("web+a://h/x?q=1"))
    again = reg.origin(URL("web+a://h/other#f"))
    assert first is again  # the cached path, taken for URL objects of a registered scheme
    assert first == origin_of(URL("web+a://h/x"), registered={"web+a"}) and first.serialize() == "web+a://h"
    assert reg.origin("web+a://h/y") == first  # strings go the general way, to an equal origin
    assert reg.origin(URL("web+a://other/")) != first and not reg.origin(URL("web+a://other/")).same_origin(first)
    https = reg.origin(URL("https://h:8443/"))  # other schemes: the general algorithm (ports count)
    assert https.serialize() == "https://h:8443" and reg.origin(URL("https://h:8443/")) is not https
    opaque = reg.origin(URL("web+unknown://h/"))
    assert opaque.is_opaque and opaque != reg.origin(URL("web+unknown://h/"))  # never shared
