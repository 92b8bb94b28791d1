"""manifest.json validation: every problem at once, each with its JSON path, value and a fix."""

from __future__ import annotations

import json
import os

import pytest

from protoreg.errors import ManifestError
from protoreg.manifest import load_manifest, manifest_json_schema

GOOD = {
    "manifest_version": 3, "name": "Demo", "version": "1.0.0",
    "browser_specific_settings": {"gecko": {"id": "demo@example.org"}},
    "protocol_handlers": [{"protocol": "web+demo", "name": "Demo", "uriHandlerScript": "h.py",
                           "uriIcon": "icon.svg", "uriIsTrustworthy": True}],
    "permissions": ["storage"], "host_permissions": ["https://example.org/*"],
    "content_security_policy": {"protocol_pages": "default-src 'self'"},
}


def write(tmp_path, manifest, files=("h.py", "icon.svg")):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest) if not isinstance(manifest, str) else manifest)
    for f in files:
        (tmp_path / f).write_text("async def handleRequest(r): pass\n")
    return tmp_path


def problems(tmp_path, manifest, **kw):
    with pytest.raises(ManifestError) as info:
        load_manifest(write(tmp_path, manifest, **kw))
    return {p.path: p for p in info.value.problems}, info.value


def test_a_good_manifest_loads_with_defaults(tmp_path):
    m = load_manifest(write(tmp_path, GOOD))
    assert m.id == "demo@example.org"
    h = m.protocol_handlers[0]
    assert (h.protocol, h.uriIsTrustworthy, h.uriTemplate) == ("web+demo", True, None)
    assert m.content_security_policy.protocol_pages == "default-src 'self'"


def test_id_defaults_to_a_slug_of_the_name(tmp_path):
    m = load_manifest(write(tmp_path, {**GOOD, "browser_specific_settings": None, "name": "My Site!"}))
    assert m.id == "my-site@local"


def test_every_problem_is_reported_at_once_with_path_value_and_hint(tmp_path):
    bad = {**GOOD, "version": "1.0.0.0.0", "permissions": ["tabs"], "protocol_handlers": [
        {"protocol": "https", "name": "x", "uriHandlerScript": "h.py"},
        {"protocol": "web+ok", "name": "y", "uriTemplate": "http://a/%s"},
        {"protocol": "web+z", "name": "z"},
        {"protocol": "web+q", "name": "q", "uriHandlerScript": "missing.py", "uriHandlerscript": "typo"},
    ]}
    found, err = problems(tmp_path, bad)
    assert set(found) >= {"version", "permissions", "protocol_handlers[0].protocol",
                          "protocol_handlers[1].uriTemplate", "protocol_handlers[2]",
                          "protocol_handlers[3].uriHandlerScript", "protocol_handlers[3].uriHandlerscript"}
    assert found["protocol_handlers[0].protocol"].value == "https"
    assert "can never be claimed" in found["protocol_handlers[0].protocol"].hint
    assert "https URL or a path inside the extension" in found["protocol_handlers[1].uriTemplate"].message
    assert "needs uriHandlerScript or uriTemplate" in found["protocol_handlers[2]"].message
    assert "does not exist" in found["protocol_handlers[3].uriHandlerScript"].message
    assert "unknown key" in found["protocol_handlers[3].uriHandlerscript"].message
    assert f"{len(err.problems)} problems" in str(err)


@pytest.mark.parametrize(("path", "needle"), [
    ("../outside.py", "stay inside"), ("/etc/passwd", "relative"), ("sub\\x.py", "relative"),
])
def test_script_paths_must_stay_inside_the_bundle(tmp_path, path, needle):
    bad = {**GOOD, "protocol_handlers": [{**GOOD["protocol_handlers"][0], "uriHandlerScript": path}]}
    found, _ = problems(tmp_path, bad)
    assert needle in found["protocol_handlers[0].uriHandlerScript"].message


def test_symlink_pointing_out_of_the_bundle_is_rejected(tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    bundle = tmp_path / "b"
    bundle.mkdir()
    os.symlink(outside, bundle / "link.py")
    bad = {**GOOD, "protocol_handlers": [{**GOOD["protocol_handlers"][0], "uriHandlerScript": "link.py"}]}
    found, _ = problems(bundle, bad)
    assert "symlink pointing outside" in found["protocol_handlers[0].uriHandlerScript"].message


def test_the_template_must_contain_percent_s(tmp_path):
    bad = {**GOOD, "protocol_handlers": [{"protocol": "web+demo", "name": "d", "uriTemplate": "https://x/"}]}
    found, _ = problems(tmp_path, bad)
    assert "must contain %s" in found["protocol_handlers[0].uriTemplate"].message


def test_duplicate_schemes_and_bad_match_patterns(tmp_path):
    h = GOOD["protocol_handlers"][0]
    found, _ = problems(tmp_path, {**GOOD, "protocol_handlers": [h, h], "host_permissions": ["example.org"]})
    assert "declared twice" in found["protocol_handlers"].message
    assert "not a match pattern" in found["host_permissions"].message


def test_malformed_json_reports_line_and_column(tmp_path):
    _, err = problems(tmp_path, '{\n  "name": "x",\n  "version": }')
    assert "line 3, column 14" in str(err)


def test_missing_manifest_and_missing_directory_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json is missing"):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "nope")


def test_json_schema_describes_protocol_handlers():
    schema = manifest_json_schema()
    assert "protocol_handlers" in schema["properties"]
    assert "uriHandlerScript" in json.dumps(schema)
