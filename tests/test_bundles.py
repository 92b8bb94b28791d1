"""The bundle file: reproducible, every file's hash and size checked, id and version bound, tampering named."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from protoreg import bundles
from protoreg.errors import TrustError
from tests.trust_helpers import make_extension


def test_packing_is_reproducible(tmp_path):
    d = make_extension(tmp_path)
    first = bundles.pack(d)
    (d / "handler.py").touch()  # a new mtime changes nothing
    assert bundles.pack(d) == first
    assert first.startswith(bundles.MAGIC)
    b = bundles.parse(first)
    assert (b.id, b.version) == ("hello@example.org", "1.0.0")
    assert set(b.files) == {"manifest.json", "handler.py"}
    assert b.sha256 == hashlib.sha256(first).hexdigest()


def test_index_lists_each_file_sha256_and_size(tmp_path):
    data = bundles.pack(make_extension(tmp_path))
    (n,) = struct.unpack_from(">Q", data, len(bundles.MAGIC))
    index = json.loads(data[len(bundles.MAGIC) + 8:len(bundles.MAGIC) + 8 + n])
    assert index["id"] == "hello@example.org" and index["version"] == "1.0.0"
    for entry in index["files"]:
        assert set(entry) == {"path", "sha256", "size"}


def test_a_changed_file_is_named(tmp_path):
    data = bundles.pack(make_extension(tmp_path))
    with pytest.raises(TrustError, match=r"handler\.py"):
        bundles.parse(data.replace(b'"hello from', b'"jello from'))
    with pytest.raises(TrustError):
        bundles.parse(data + b"x")
    with pytest.raises(TrustError, match="not a protoreg bundle"):
        bundles.parse(b"PK\x03\x04" + data)


def test_paths_escaping_the_bundle_are_refused(tmp_path):
    bad = bundles.build("x@y", "1.0", {"../evil.py": b"", "manifest.json": b"{}"})
    with pytest.raises(TrustError, match="not a plain relative path"):
        bundles.parse(bad)


def test_verify_tree_names_the_changed_file_and_catches_a_changed_index(tmp_path):
    data = bundles.pack(make_extension(tmp_path))
    b = bundles.parse(data)
    tree = tmp_path / "tree"
    bundles.write_tree(b, tree)
    assert bundles.verify_tree(tree, b.sha256, source="t").files == b.files
    target = tree / "files" / "handler.py"
    target.chmod(0o644)
    target.write_text("print('owned')")
    with pytest.raises(TrustError, match=r"handler\.py .*changed on disk"):
        bundles.verify_tree(tree, b.sha256, source="t")
    bundles.write_tree(b, tmp_path / "tree2")
    index = tmp_path / "tree2" / "index.json"
    index.write_bytes(index.read_bytes().replace(b'"version":"1.0.0"', b'"version":"9.0.0"'))
    with pytest.raises(TrustError, match=r"index .*changed"):
        bundles.verify_tree(tmp_path / "tree2", b.sha256, source="t")
