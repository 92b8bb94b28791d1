"""The signed bundle file (``NAME.protoreg``): one file holding an extension, reproducible byte for byte.

Layout::

    b"protoreg-bundle 1\\n"              magic and format version (18 bytes)
    8 bytes, big-endian                  length of the index
    index                                canonical JSON (sorted keys, no spaces, UTF-8):
                                         {"files": [{"path", "sha256", "size"}, ...], "format": 1,
                                          "id": EXT_ID, "version": VERSION}
    the files' bytes, in index order     (the index is sorted by path)

A store signs the sha256 of the whole file (a TUF target), so the signature covers the index, hence every file's
sha256 and size, and the extension id and version the index names. Packing the same directory twice gives the
same bytes: no timestamps, owners or modes, paths sorted, JSON canonical.

Verification (:func:`parse`) checks the magic, the index, that every path is a plain relative path, that every
file's size and sha256 match, and that nothing trails the last file; a mismatch names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from protoreg.errors import InstallError, TrustError

__all__ = ["FORMAT", "MAGIC", "MAX_BUNDLE_BYTES", "Bundle", "build", "pack", "parse", "verify_tree", "write_tree"]

MAGIC: Final = b"protoreg-bundle 1\n"
FORMAT: Final = 1
#: Bounds: files in a bundle, total bytes, index size.
MAX_FILES: Final = 5000
MAX_BUNDLE_BYTES: Final = 256 * 1024 * 1024
MAX_INDEX_BYTES: Final = 4 * 1024 * 1024
_LEN: Final = struct.Struct(">Q")
INDEX_NAME: Final = "index.json"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its index, every file's bytes, and the sha256 of the whole bundle file."""

    id: str
    version: str
    index: bytes
    files: Mapping[str, bytes]
    sha256: str
    length: int

    @property
    def manifest_bytes(self) -> bytes:
        return self.files["manifest.json"]


def _index_bytes(ext_id: str, version: str, files: Mapping[str, bytes]) -> bytes:
    entries = [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in sorted(files.items())]
    doc = {"files": entries, "format": FORMAT, "id": ext_id, "version": version}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build(ext_id: str, version: str, files: Mapping[str, bytes]) -> bytes:
    """The bundle file for ``files`` (bundle path -> bytes), deterministic."""
    index = _index_bytes(ext_id, version, files)
    return b"".join([MAGIC, _LEN.pack(len(index)), index, *(files[p] for p in sorted(files))])


def read_tree(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every regular file of an extension directory (hidden and ``__pycache__`` directories skipped), bounded.

    Symlinked directories are not followed; a symlinked file must stay inside the directory."""
    root = Path(directory)
    real_root = root.resolve()
    files: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".protoreg")):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not path.resolve().is_relative_to(real_root):
                raise InstallError(f"{rel} in {root} is a symlink pointing outside the extension directory. Copy "
                                   "the file into the bundle instead of linking to it")
            fd = os.open(path.resolve(), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise InstallError(f"{rel} in {root} is not a regular file. Remove it from the extension")
                data = f.read(MAX_BUNDLE_BYTES - total + 1)
            total += len(data)
            if total > MAX_BUNDLE_BYTES or len(files) >= MAX_FILES:
                raise InstallError(f"the extension {root} is larger than {MAX_BUNDLE_BYTES // 2**20} MiB or "
                                   f"{MAX_FILES} files. Move data out of it")
            files[rel] = data
    return files


def pack(directory: str | os.PathLike[str]) -> bytes:
    """Validate the extension directory's manifest and return its bundle file's bytes (deterministic)."""
    from protoreg.manifest import load_manifest

    manifest = load_manifest(directory)
    return build(manifest.id, manifest.version, read_tree(directory))


def _check_path(path: Any, source: str) -> str:
    if not isinstance(path, str) or not path:
        raise TrustError(f"{source}: the bundle index has an empty or non-text path. The bundle is damaged: "
                         "download it again or ask the store to republish it")
    pure = PurePosixPath(path)
    if (pure.is_absolute() or "\\" in path or "\0" in path or pure.as_posix() != path
            or any(p in ("..", ".") for p in pure.parts)):
        raise TrustError(f"{source}: the bundle index names the path {path!r}, which is not a plain relative "
                         "path. The bundle is refused")
    return path


def _parse_index(index: bytes, source: str) -> tuple[str, str, list[tuple[str, str, int]]]:
    try:
        doc = json.loads(index)
        entries = [(_check_path(e["path"], source), str(e["sha256"]), int(e["size"])) for e in doc["files"]]
        ext_id, version = str(doc["id"]), str(doc["version"])
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustError(f"{source}: the bundle index is malformed ({exc}). The bundle is damaged or not a "
                         "protoreg bundle") from None
    paths = [p for p, _, _ in entries]
    if paths != sorted(set(paths)):
        raise TrustError(f"{source}: the bundle index lists paths out of order or twice. The bundle is refused")
    if len(entries) > MAX_FILES:
        raise TrustError(f"{source}: the bundle has more than {MAX_FILES} files")
    return ext_id, version, entries


def parse(data: bytes, *, source: str = "bundle") -> Bundle:
    """Verify a bundle file's bytes and return its files; raise TrustError naming what does not match."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LEN.size:
        raise TrustError(f"{source} is not a protoreg bundle (no 'protoreg-bundle 1' header). Build bundles with "
                         "protoreg store publish")
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if n > MAX_INDEX_BYTES or start + n > len(data):
        raise TrustError(f"{source}: the bundle index length is out of range. The bundle is truncated or damaged")
    index = data[start:start + n]
    ext_id, version, entries = _parse_index(index, source)
    pos = start + n
    files: dict[str, bytes] = {}
    view = memoryview(data)
    for path, digest, size in entries:
        chunk = bytes(view[pos:pos + size])
        pos += size
        if len(chunk) != size or hashlib.sha256(chunk).hexdigest() != digest:
            raise TrustError(f"{source}: the file {path} of {ext_id} does not match its signed hash. The bundle "
                             "was changed after signing: refused")
        files[path] = chunk
    if pos != len(data):
        raise TrustError(f"{source}: {len(data) - pos} bytes follow the last file of the bundle. Refused")
    if "manifest.json" not in files:
        raise TrustError(f"{source}: the bundle has no manifest.json")
    return Bundle(ext_id, version, index, files, hashlib.sha256(data).hexdigest(), len(data))


def write_tree(bundle: Bundle, dest: Path) -> None:
    """Write a verified bundle's index and files under ``dest`` (created; must not exist), read-only."""
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    (tmp / "files").mkdir(parents=True)
    (tmp / INDEX_NAME).write_bytes(bundle.index)
    for path, data in bundle.files.items():
        target = tmp / "files" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o444)
    tmp.rename(dest)


def verify_tree(directory: Path, sha256: str, *, source: str) -> Bundle:
    """Re-verify a bundle written by :func:`write_tree` against the signed sha256 of its bundle file.

    Reads each file once, checks its size and sha256 against the index (a changed file is named), and recomputes
    the whole bundle's sha256 from the index and the files (so a changed index is caught too). Returns the
    verified bytes: the caller executes these and never reads the files again."""
    try:
        index = (directory / INDEX_NAME).read_bytes()
    except OSError as exc:
        raise TrustError(f"{source}: the installed bundle's index can't be read ({exc.strerror}). Reinstall the "
                         "extension") from None
    ext_id, version, entries = _parse_index(index, source)
    whole = hashlib.sha256(MAGIC)
    whole.update(_LEN.pack(len(index)))
    whole.update(index)
    files: dict[str, bytes] = {}
    length = len(MAGIC) + _LEN.size + len(index)
    for path, digest, size in entries:
        try:
            fd = os.open(directory / "files" / path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read(size + 1)
        except OSError as exc:
            raise TrustError(f"{source}: the file {path} of {ext_id} can't be read ({exc.strerror}): it was "
                             "removed or replaced after install. Refused; reinstall the extension") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise TrustError(f"{source}: the file {path} of {ext_id} changed on disk after install (it no longer "
                             "matches its signed hash). Refused, not executed; reinstall the extension")
        whole.update(data)
        length += size
        files[path] = data
    if whole.hexdigest() != sha256:
        raise TrustError(f"{source}: the index of {ext_id} changed on disk after install (the bundle no longer "
                         "matches its signed hash). Refused, not executed; reinstall the extension")
    return Bundle(ext_id, version, index, files, sha256, length)
