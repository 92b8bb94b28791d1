"""Fuzz target: manifest.json text and parsed manifest shapes. Only ManifestError may escape.

The example budget is PROTOREG_FUZZ_EXAMPLES (200 by default; ``python3 tasks.py fuzz`` runs 10000).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.errors import ManifestError
from protoreg.manifest import load_manifest, validate_manifest

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

GOOD = {
    "manifest_version": 3, "name": "Demo", "version": "1.0.0",
    "browser_specific_settings": {"gecko": {"id": "demo@example.org"}},
    "protocol_handlers": [{"protocol": "web+demo", "name": "Demo", "uriHandlerScript": "h.py",
                           "uriIcon": "icon.svg", "uriIsTrustworthy": True, "uriTemplate": "https://x.org/%s"}],
    "permissions": ["storage"], "host_permissions": ["https://example.org/*"],
    "content_security_policy": {"protocol_pages": "default-src 'self'"},
}
# Text that reaches the interesting rules: surrogates, NUL, separators, schemes, very long names.
_nasty = st.sampled_from(["\ud800", "\udfff", "\x00", "/", "\\", "..", "://", "%s", "*", "a" * 300, "web+", "é",
                          "<all_urls>", "https://", ".py", "C:", "\n", "__pycache__", "~"])
_text = st.one_of(st.text(max_size=40), st.lists(st.one_of(_nasty, st.text(max_size=5)), max_size=6).map("".join))
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _text)
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_text, inner, max_size=4)), max_leaves=20)


@st.composite
def manifest_shapes(draw: st.DrawFn) -> object:
    """GOOD with some keys (top-level or in the handler entry) replaced by arbitrary JSON values, or removed."""
    data = json.loads(json.dumps(GOOD))
    handler = data["protocol_handlers"][0]
    for _ in range(draw(st.integers(0, 4))):
        target = data if draw(st.booleans()) else handler
        key = draw(st.one_of(st.sampled_from(sorted(target)), _text))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(_json)
    if draw(st.integers(0, 5)) == 0:
        data["protocol_handlers"] = draw(st.lists(_json, max_size=3))
    return data


@contextlib.contextmanager
def _bundle() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="protoreg-fuzz-") as d:
        root = Path(d)
        (root / "h.py").write_text("async def handleRequest(r): pass\n")
        (root / "icon.svg").write_text("<svg/>")
        yield root


@FUZZ
@given(manifest_shapes())
def test_parsed_manifest_shapes_raise_only_manifest_error(data):
    try:
        with _bundle() as root:
            validate_manifest(data, root=root)
    except ManifestError as exc:
        assert exc.problems and str(exc)
        for p in exc.problems:
            str(p).encode("utf-8")  # printable: no surrogate leaks into a message


@FUZZ
@given(st.one_of(manifest_shapes().map(json.dumps), _json.map(json.dumps), st.text(max_size=200),
                 st.builds(lambda a, b: a + b, st.text("[{", min_size=0, max_size=60), st.text(max_size=20))))
def test_manifest_json_text_raises_only_manifest_error(text):
    try:
        with _bundle() as root:
            (root / "manifest.json").write_text(text, encoding="utf-8", errors="surrogatepass")
            load_manifest(root)
    except ManifestError as exc:
        assert exc.problems
        for p in exc.problems:
            str(p).encode("utf-8")
