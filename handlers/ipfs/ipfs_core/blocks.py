"""A filesystem block store. Every block is verified against its CID on the way in AND on the way out."""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from multiformats import CID

from ipfs_core import BlockNotFound
from ipfs_core.cids import _hash_info, digest_matches, is_identity, v1_base32, verify

log = logging.getLogger(__name__)


class BlockStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._root_text = str(self.root)

    def _path(self, cid: CID) -> Path:
        return self.root / _relative(_hash_info(cid)[2])

    def has(self, cid: CID) -> bool:
        return is_identity(cid) or self._path(cid).exists()

    def put(self, cid: CID, data: bytes, *, verified: bool = False) -> bool:
        """Store a verified block; False if it was already there. Raises CorruptBlock for a mismatch.
        ``verified=True`` skips the hash when the caller has just checked it (``get`` checks again anyway)."""
        if not verified:
            verify(cid, data)
        if is_identity(cid):
            return False
        path = self._path(cid)
        if path.exists():
            try:
                if digest_matches(cid, path.read_bytes()):
                    return False
            except OSError:
                pass
            log.warning("block %s in the store was corrupt; replacing it with the verified copy", v1_base32(cid))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def get(self, cid: CID) -> bytes:
        """The block's bytes, verified again (the store is never trusted blindly)."""
        if is_identity(cid):
            return bytes(cid.raw_digest)
        try:
            data = self._path(cid).read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block {v1_base32(cid)} is not in the local block store (import a CAR that "
                                "contains it)") from None
        return verify(cid, data)

    def local_leaf(self, cid: CID, size: int) -> tuple[str, str] | None:
        """(path relative to the store's root, sha256 hex) of a raw sha2-256 block of ``size`` bytes held here, so
        that the host can read and verify it itself; None for anything else (it is read and verified here)."""
        if cid.codec.name != "raw":
            return None
        name, raw, full = _hash_info(cid)
        if name != "sha2-256":
            return None
        rel = _relative(full)  # a str, not a Path: this runs once per leaf of every file read
        try:
            if os.stat(f"{self._root_text}/{rel}").st_size != size:
                return None  # read here: the size check and the error are the reader's
        except OSError:
            return None
        return rel, raw.hex()

    def __iter__(self) -> Iterator[Path]:
        if self.root.exists():
            yield from (p for p in self.root.glob("*/*") if not p.name.startswith(".tmp-"))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _relative(multihash: bytes) -> str:
    """A block's path under the store's root. Keyed by multihash, so CIDv0 and CIDv1 share blocks. (stdlib base32:
    multibase.encode is slow.)"""
    name = base64.b32encode(multihash).decode().rstrip("=").lower()
    return f"{name[-3:-1]}/{name}"
