"""manifest.json validation: every problem at once, each with its JSON path, value and a fix."""

from __future__ import annotations

import copy
import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.errors import ManifestError
from protoreg.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    is_match_pattern,
    load_manifest,
    manifest_json_schema,
    match_pattern_problem,
)
from protoreg.policy.matchpatterns import parse_pattern

GOOD = {
    "manifest_version": 3, "name": "Demo", "version": "1.0.0",
    "browser_specific_settings": {"gecko": {"id": "demo@example.org"}},
    "protocol_handlers": [{"protocol": "web+demo", "name": "Demo", "uriHandlerScript": "h.py",
                           "uriIcon": "icon.svg", "uriIsTrustworthy": True}],
    "permissions": ["storage"], "host_permissions": ["https://example.org/*"],
    "content_security_policy": {"protocol_pages": "default-src 'self'"},
}


def write(tmp_path, manifest, files=("h.py", "icon.svg")):
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (tmp_path / "manifest.json").write_text(text)
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("async def handleRequest(r): pass\n")
    return tmp_path


def problems(tmp_path, manifest, **kw):
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, manifest, **kw))
    return {p.path: p for p in info.value.problems}, info.value


def with_handler(**changes):
    m = copy.deepcopy(GOOD)
    m["protocol_handlers"][0].update(changes)
    for key, value in changes.items():
        if value is None:
            del m["protocol_handlers"][0][key]
    return m


def only(tmp_path, manifest, path, **kw):
    """The manifest has exactly one problem, at ``path``; return it."""
    found, err = problems(tmp_path, manifest, **kw)
    assert list(found) == [path], err
    return found[path]


# -- good manifests ---------------------------------------------------------------------------------------------
def test_a_good_manifest_loads_with_its_values(tmp_path):
    m = load_manifest(write(tmp_path, GOOD))
    assert (m.id, m.name, m.version, m.manifest_version) == ("demo@example.org", "Demo", "1.0.0", 3)
    h = m.protocol_handlers[0]
    assert (h.protocol, h.uriIsTrustworthy, h.uriTemplate, h.uriHandlerScript) == ("web+demo", True, None, "h.py")
    assert m.content_security_policy.protocol_pages == "default-src 'self'"
    assert m.granted_hosts == ["https://example.org/*"]


def test_defaults_trustworthy_false_manifest_version_3_and_empty_grants(tmp_path):
    minimal = {"name": "M", "version": "1", "protocol_handlers": [{"protocol": "ipfs", "name": "I",
                                                                     "uriTemplate": "https://gw.example/ipfs/%s"}]}
    m = load_manifest(write(tmp_path, minimal, files=()))
    assert m.protocol_handlers[0].uriIsTrustworthy is False
    assert (m.manifest_version, m.permissions, m.host_permissions, m.content_security_policy) == (3, [], [], None)


def test_without_a_gecko_id_the_id_is_a_slug_of_the_name_at_local(tmp_path):
    m = load_manifest(write(tmp_path, {**GOOD, "browser_specific_settings": None, "name": "My Site!"}))
    assert m.id == "my-site@local"
    m = load_manifest(write(tmp_path, {**GOOD, "browser_specific_settings": {"gecko": {}}, "name": "!!"}))
    assert m.id == "extension@local"


def test_a_guid_id_is_accepted(tmp_path):
    guid = "{12345678-abcd-ef01-2345-6789abcdef01}"
    m = load_manifest(write(tmp_path, {**GOOD, "browser_specific_settings": {"gecko": {"id": guid}}}))
    assert m.id == guid


def test_unknown_top_level_keys_are_ignored_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="protoreg.manifest")
    m = load_manifest(write(tmp_path, {**GOOD, "description": "d", "icons": {"48": "i.png"}}))
    assert m.ignored_keys == ["description", "icons"]
    assert "keys not used by protoreg are ignored: description, icons" in caplog.text


def test_script_paths_are_normalised_to_the_bundle_key(tmp_path):
    (tmp_path / "protocol").mkdir()
    m = load_manifest(write(tmp_path, with_handler(uriHandlerScript="./protocol//h.py"), files=("protocol/h.py",
                                                                                                "icon.svg")))
    assert m.protocol_handlers[0].uriHandlerScript == "protocol/h.py"


def test_mv2_host_patterns_in_permissions_are_granted_hosts(tmp_path):
    m = load_manifest(write(tmp_path, {**GOOD, "permissions": ["storage", "https://api.example/*"]}))
    assert m.granted_hosts == ["https://example.org/*", "https://api.example/*"]


# -- every problem at once --------------------------------------------------------------------------------------
def test_every_problem_is_reported_at_once_with_path_value_and_hint(tmp_path):
    bad = {**GOOD, "version": "1.0.0.0.0", "permissions": ["storage", "tabs"], "host_permissions": ["example.org"],
           "protocol_handlers": [
               {"protocol": "https", "name": "x", "uriHandlerScript": "h.py"},
               {"protocol": "web+ok", "name": "y", "uriTemplate": "http://a/%s"},
               {"protocol": "web+z", "name": "z"},
               {"protocol": "web+q", "name": "q", "uriHandlerScript": "missing.py", "uriHandlerscript": "typo"},
               {"protocol": "web+ok", "name": "dup", "uriTemplate": "https://a/%s"},
           ]}
    found, err = problems(tmp_path, bad)
    assert list(found) == [
        "version", "protocol_handlers[0].protocol", "protocol_handlers[1].uriTemplate", "protocol_handlers[2]",
        "protocol_handlers[3].uriHandlerScript", "protocol_handlers[3].uriHandlerscript",
        "protocol_handlers[4].protocol", "permissions[1]", "host_permissions[0]"]
    assert all(p.message and p.hint for p in err.problems)
    assert found["protocol_handlers[0].protocol"].value == "https"
    assert found["permissions[1]"].value == "tabs"
    assert f"{len(err.problems)} problems" in str(err)
    assert "Fix: " in str(err) and "(got 'tabs')" in str(err)


def test_problems_in_a_handler_are_listed_together_with_a_duplicate_scheme(tmp_path):
    h = GOOD["protocol_handlers"][0]
    found, _ = problems(tmp_path, {**GOOD, "protocol_handlers": [h, {**h, "name": ""}, {**h, "uriIcon": "no.svg"}]})
    assert set(found) == {"protocol_handlers[1].name", "protocol_handlers[1].protocol",
                          "protocol_handlers[2].protocol", "protocol_handlers[2].uriIcon"}
    dup = found["protocol_handlers[2].protocol"]
    assert "already declared by protocol_handlers[0]" in dup.message and dup.value == "web+demo"
    assert "keep one entry per scheme" in dup.hint


# -- one rule each: (change, JSON path, words in the message, words in the hint) ----------------------------------
RULES = [
    ({"manifest_version": 4}, "manifest_version", "Input should be 2 or 3", "use 2 or 3"),
    ({"name": ""}, "name", "at least 1 character", "non-empty string"),
    ({"name": 5}, "name", "valid string", "JSON string"),
    ({"version": "01.0"}, "version", "without leading zeros", '"1.0.0"'),
    ({"version": "v1"}, "version", "dot-separated integers", '"1.0.0"'),
    ({"browser_specific_settings": {"gecko": {"id": "../evil"}}}, "browser_specific_settings.gecko.id",
     "name@domain", "my-scheme@example.org"),
    ({"protocol_handlers": []}, "protocol_handlers", "at least 1 item", "at least one entry"),
    ({"protocol_handlers": "web+x"}, "protocol_handlers", "valid list", "JSON array"),
    ({"permissions": ["storage", "tabs"]}, "permissions[1]", "unknown permission 'tabs'", "storage"),
    ({"permissions": ["storag"]}, "permissions[0]", "unknown permission", "did you mean 'storage'"),
    ({"permissions": ["https://x"]}, "permissions[0]", "no path", '"https://x/*"'),
    ({"host_permissions": ["example.org"]}, "host_permissions[0]", "no '://'", "https://example.org/*"),
    ({"host_permissions": ["https://example.org"]}, "host_permissions[0]", "no path", '"https://example.org/*"'),
    ({"host_permissions": ["https://ex*ample.org/*"]}, "host_permissions[0]", "'*' may only be",
     "*.ample.org"),
    ({"host_permissions": ["https:///*"]}, "host_permissions[0]", "no host", '"*" for any host'),
    ({"host_permissions": ["HTTP://x/*"]}, "host_permissions[0]", "invalid scheme", "https"),
    ({"host_permissions": "https://x/*"}, "host_permissions", "valid list", "JSON array"),
    ({"content_security_policy": {"protocol_pages": "default-src 'self'\r\nX-Evil: 1"}},
     "content_security_policy.protocol_pages", "printable ASCII", "remove line breaks"),
    ({"content_security_policy": "default-src 'self'"}, "content_security_policy", "valid dictionary",
     "JSON object"),
]


@pytest.mark.parametrize(("change", "path", "message", "hint"), RULES, ids=[r[1] + ":" + str(i)
                                                                             for i, r in enumerate(RULES)])
def test_each_top_level_rule_has_its_path_and_hint(tmp_path, change, path, message, hint):
    problem = only(tmp_path, {**GOOD, **change}, path)
    assert message in problem.message
    assert hint in problem.hint


def test_a_missing_required_key_says_which_key_to_add(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k not in ("name", "version")}
    found, _ = problems(tmp_path, bad)
    assert found["name"].hint == "add the key 'name'" and found["name"].value is None
    assert found["version"].hint.startswith("add the key 'version'")


HANDLER_RULES = [
    ({"protocol": "http"}, "protocol", "can't be claimed", "can never be claimed"),
    ({"protocol": "web+Demo"}, "protocol", "can't be claimed", "use 'web+demo'"),
    ({"protocol": "web+demo2"}, "protocol", "can't be claimed", "lowercase ASCII letters"),
    ({"protocol": "foo"}, "protocol", "can't be claimed", "safelist"),
    ({"name": None}, "name", "Field required", "add the key 'name'"),
    ({"uriIsTrustworthy": "yes"}, "uriIsTrustworthy", "valid boolean", "true or false"),
    ({"uriTemplate": "https://gw.example/"}, "uriTemplate", "must contain %s", '"https://gw.example/%s"'),
    ({"uriTemplate": "http://gw.example/%s"}, "uriTemplate", "not http:", "https://host/path?url=%s"),
    ({"uriTemplate": "javascript:alert(%s)"}, "uriTemplate", "not javascript:", "bundle-relative"),
    ({"uriTemplate": "https://%s.gw.example/"}, "uriTemplate", "name a host right after https://", "https://"),
    ({"uriTemplate": "https://user@gw.example/%s"}, "uriTemplate", "name a host", "https://"),
    ({"uriTemplate": "//evil.example/%s"}, "uriTemplate", "must be a path", "bundle-relative"),
    ({"uriTemplate": "../up.html?u=%s"}, "uriTemplate", "stay inside the extension", "bundle-relative"),
    ({"uriHandlerScript": None}, "", "needs uriHandlerScript or uriTemplate", "uriHandlerScript"),
    ({"uriHandlerScript": "../outside.py"}, "uriHandlerScript", "stay inside", "protocol/outside.py"),
    ({"uriHandlerScript": "/etc/evil.py"}, "uriHandlerScript", "relative POSIX path", "protocol/evil.py"),
    ({"uriHandlerScript": "C:/x.py"}, "uriHandlerScript", "relative POSIX path", "relative path"),
    ({"uriHandlerScript": "sub\\x.py"}, "uriHandlerScript", "relative POSIX path", "protocol/x.py"),
    ({"uriHandlerScript": ""}, "uriHandlerScript", "path is empty", "relative path"),
    ({"uriHandlerScript": "missing.py"}, "uriHandlerScript", "does not exist", "create missing.py"),
    ({"uriHandlerScript": "handler.js"}, "uriHandlerScript", "must be a Python file", "handler.py"),
    ({"uriHandlerScript": ".hidden/h.py"}, "uriHandlerScript", "hidden or __pycache__", "protocol/h.py"),
    ({"uriHandlerScript": 7}, "uriHandlerScript", "valid string", "JSON string"),
    ({"uriIcon": "../icon.svg"}, "uriIcon", "stay inside", "protocol/icon.svg"),
    ({"uriIcon": "/abs/icon.svg"}, "uriIcon", "relative POSIX path", "relative path"),
    ({"uriIcon": "nope.svg"}, "uriIcon", "icon file does not exist", "create nope.svg"),
    ({"uriHandlerscript": "h.py"}, "uriHandlerscript", "unknown key", "did you mean 'uriHandlerScript'"),
    ({"colour": "red"}, "colour", "unknown key", "only the keys protocol, name"),
]


@pytest.mark.parametrize(("change", "key", "message", "hint"), HANDLER_RULES,
                         ids=[f"{r[1] or 'entry'}:{i}" for i, r in enumerate(HANDLER_RULES)])
def test_each_handler_rule_has_its_path_value_and_hint(tmp_path, change, key, message, hint):
    path = "protocol_handlers[0]" + (f".{key}" if key else "")
    problem = only(tmp_path, with_handler(**change), path)
    assert message in problem.message
    assert hint in problem.hint
    if key and change.get(key) is not None:
        assert problem.value == change[key]


def test_an_extension_relative_template_is_accepted(tmp_path):
    m = load_manifest(write(tmp_path, with_handler(uriHandlerScript=None, uriTemplate="pages/open.html?u=%s")))
    assert m.protocol_handlers[0].uriTemplate == "pages/open.html?u=%s"


# -- the file system --------------------------------------------------------------------------------------------
def test_a_symlink_pointing_out_of_the_bundle_is_rejected(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    bundle = tmp_path / "b"
    bundle.mkdir()
    os.symlink(outside, bundle / "link.py")
    problem = only(bundle, with_handler(uriHandlerScript="link.py"), "protocol_handlers[0].uriHandlerScript")
    assert "symlink pointing outside" in problem.message and "copy the file" in problem.hint


def test_a_symlinked_directory_pointing_out_is_rejected_too(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "h.py").write_text("x = 1\n")
    bundle = tmp_path / "b"
    bundle.mkdir()
    os.symlink(tmp_path / "elsewhere", bundle / "protocol")
    problem = only(bundle, with_handler(uriHandlerScript="protocol/h.py"), "protocol_handlers[0].uriHandlerScript")
    assert "symlink pointing outside" in problem.message


def test_a_symlink_inside_the_bundle_is_fine(tmp_path):
    write(tmp_path, GOOD)
    os.symlink(tmp_path / "h.py", tmp_path / "alias.py")
    assert load_manifest(write(tmp_path, with_handler(uriHandlerScript="alias.py")))


def test_a_directory_is_not_a_script(tmp_path):
    (tmp_path / "dir.py").mkdir()
    problem = only(tmp_path, with_handler(uriHandlerScript="dir.py"), "protocol_handlers[0].uriHandlerScript")
    assert "not a regular file" in problem.message


# -- the file itself --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "where"), [
    ('{\n  "name": "x",\n  "version": }', "line 3, column 14"),
    ('{"name": "x",}', "line 1, column 14"),
    ("", "line 1, column 1"),
])
def test_malformed_json_reports_line_and_column(tmp_path, text, where):
    _, err = problems(tmp_path, text)
    (problem,) = err.problems
    assert where in problem.message and "trailing comma" in problem.hint


def test_a_json_array_is_not_a_manifest(tmp_path):
    _, err = problems(tmp_path, "[1, 2]")
    assert err.problems[0].message == "the manifest must be a JSON object" and err.problems[0].value == "list"


def test_missing_manifest_and_missing_directory_are_clear(tmp_path):
    with pytest.raises(ManifestError, match=r"manifest\.json is missing") as info:
        load_manifest(tmp_path)
    assert "create manifest.json" in info.value.problems[0].hint
    with pytest.raises(ManifestError, match="does not exist or is not a directory"):
        load_manifest(tmp_path / "nope")


def test_an_oversized_or_non_utf8_manifest_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b" " * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ManifestError, match="larger than"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b'{"name": "\xff"}')
    with pytest.raises(ManifestError, match="can't be read"):
        load_manifest(tmp_path)


def test_a_manifest_symlinked_from_outside_is_refused(tmp_path):
    (tmp_path / "real.json").write_text(json.dumps(GOOD))
    bundle = tmp_path / "b"
    bundle.mkdir()
    os.symlink(tmp_path / "real.json", bundle / "manifest.json")
    with pytest.raises(ManifestError, match="symlink out of the extension directory"):
        load_manifest(bundle)


# -- match patterns ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["<all_urls>", "https://example.org/*", "*://*/*", "https://*.example.org/a*",
                                     "http://127.0.0.1/*", "wss://x.example:8443/", "ipfs://*/*", "ftp://x/y"])
def test_valid_match_patterns_are_accepted_and_the_broker_can_parse_them(pattern):
    assert is_match_pattern(pattern)
    parse_pattern(pattern)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="htps:/*.exampl-org<>_1~ ", max_size=30))
def test_every_accepted_match_pattern_parses_in_the_broker_and_every_refusal_has_a_hint(text):
    problem = match_pattern_problem(text)
    if problem is None:
        parse_pattern(text)
    else:
        message, hint = problem
        assert message and hint


# -- model use without load_manifest ----------------------------------------------------------------------------
def test_the_model_alone_still_refuses_duplicate_schemes_and_skips_file_checks():
    h = {"protocol": "ipfs", "name": "a", "uriHandlerScript": "not/on/disk.py"}
    assert Manifest.model_validate({"name": "n", "version": "1", "protocol_handlers": [h]})
    with pytest.raises(ValueError, match=r"protocol_handlers\[1\]\.protocol: the scheme 'ipfs' is already"):
        Manifest.model_validate({"name": "n", "version": "1", "protocol_handlers": [h, h]})


def test_json_schema_describes_protocol_handlers():
    schema = manifest_json_schema()
    assert "protocol_handlers" in schema["properties"]
    handler = schema["$defs"]["ProtocolHandler"]
    assert set(handler["properties"]) == {"protocol", "name", "uriTemplate", "uriHandlerScript", "uriIcon",
                                          "uriIsTrustworthy"}
    assert handler["properties"]["uriIsTrustworthy"]["default"] is False
    assert "%s" in handler["properties"]["uriTemplate"]["description"]
    assert handler["additionalProperties"] is False
    json.dumps(schema)


def test_an_entry_with_a_typo_still_reports_that_it_has_no_script_or_template(tmp_path):
    found, _ = problems(tmp_path, with_handler(uriHandlerScript=None, uriHandlerscript="h.py"))
    assert set(found) == {"protocol_handlers[0]", "protocol_handlers[0].uriHandlerscript"}
    assert "needs uriHandlerScript or uriTemplate" in found["protocol_handlers[0]"].message


def test_a_script_reached_through_a_symlinked_directory_inside_the_bundle_is_rejected(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "h.py").write_text("x = 1\n")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    problem = only(tmp_path, with_handler(uriHandlerScript="alias/h.py"), "protocol_handlers[0].uriHandlerScript")
    assert "symlinked directory" in problem.message and "real directory" in problem.hint


# -- hostile input: never a crash, always a ManifestError with the JSON path ------------------------------------------
def test_json_nested_a_thousand_levels_is_a_problem_with_its_path_not_a_recursion_error(tmp_path):
    text = json.dumps({**GOOD, "description": "PLACEHOLDER"}).replace('"PLACEHOLDER"', "[" * 1000 + "]" * 1000)
    problem = only(tmp_path, text, "description" + "[0]" * 31)
    assert "nested 1001 levels deep" in problem.message and "remove the nesting" in problem.hint


def test_a_top_level_array_nested_a_thousand_levels_is_a_problem(tmp_path):
    _found, err = problems(tmp_path, "[" * 1000 + "]" * 1000)
    assert len(err.problems) == 1 and "nested 1000 levels deep" in err.problems[0].message


@pytest.mark.parametrize("where", ["script", "permission", "host", "key", "protocol"])
def test_a_lone_surrogate_is_a_problem_at_its_path_not_a_unicode_error(tmp_path, where):
    m = copy.deepcopy(GOOD)
    path = {"script": "protocol_handlers[0].uriHandlerScript", "permission": "permissions[0]",
            "host": "host_permissions[1]", "key": "protocol_handlers[0]", "protocol": "protocol_handlers[0].protocol"}
    if where == "script":
        m["protocol_handlers"][0]["uriHandlerScript"] = "\ud800.py"
    elif where == "permission":
        m["permissions"] = ["\ud800"]
    elif where == "host":
        m["host_permissions"].append("https://\udfff.example/*")
    elif where == "key":
        m["protocol_handlers"][0]["\ud800"] = 1
    else:
        m["protocol_handlers"][0]["protocol"] = "web+\ud800"
    text = json.dumps(m)  # ASCII-only JSON with a \ud800 escape: legal JSON, not Unicode text
    assert "\\ud800" in text or "\\udfff" in text
    problem = only(tmp_path, text, path[where])
    assert "lone surrogate" in problem.message
    str(problem).encode("utf-8")  # the message itself is printable


@pytest.mark.parametrize("key", ["uriHandlerScript", "uriIcon"])
def test_a_path_too_long_for_the_file_system_is_a_problem_not_an_oserror(tmp_path, key):
    name = "a" * 256 + (".py" if key == "uriHandlerScript" else ".svg")
    problem = only(tmp_path, with_handler(**{key: name}), f"protocol_handlers[0].{key}")
    assert "can't be looked up" in problem.message and "File name too long" in problem.message


def test_validate_manifest_takes_parsed_data_and_raises_only_manifest_error():
    from protoreg.manifest import validate_manifest

    assert validate_manifest({**GOOD}).name == "Demo"  # no root: file checks skipped
    deep: object = []
    for _ in range(2000):
        deep = [deep]
    for bad in (None, [], {"name": deep}, {"\ud800": 1}, {**GOOD, "name": "\udc00"}):
        with pytest.raises(ManifestError):
            validate_manifest(bad)
