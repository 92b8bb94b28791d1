"""Read UnixFS (ipfs specs src/unixfs.md) from a block store: path resolution through directories and HAMT
shards, files by byte range (fetching only the blocks a range needs), symlinks, listings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import mmh3
from multiformats import CID

from ipfs_core import MalformedNode, NoSuchPath
from ipfs_core.blocks import BlockStore
from ipfs_core.cids import decode_link, v1_base32
from ipfs_core.dagpb import DIRECTORY, FILE, HAMT_SHARD, RAW, SYMLINK, PBNode, UnixFSData, decode_node, decode_unixfs

MURMUR3_X64_64 = 0x22
#: A file DAG or HAMT deeper than this is refused as malformed rather than recursed into (a balanced 174-link DAG
#: of depth 8 already holds more than any disk; a HAMT of fanout 2+ is at most 64 levels by its 64-bit hash).
MAX_DEPTH = 100


@dataclass
class Entry:
    """A resolved UnixFS node."""

    cid: CID
    kind: str                 # "file", "directory", "symlink"
    size: int                 # file size; for a directory the sum of its links' Tsize
    node: PBNode | None = None
    unixfs: UnixFSData | None = None
    data: bytes | None = None  # raw leaf bytes


@dataclass
class DirItem:
    name: str
    cid: CID
    size: int | None


def hamt_hash(name: str) -> bytes:
    """murmur3-x64-64 of the name, as the UnixFS spec defines it: the first 64 bits of x64 murmur3-128, big-endian."""
    h1, _h2 = mmh3.hash64(name.encode(), seed=0, x64arch=True, signed=False)
    return h1.to_bytes(8, "big")


class UnixFS:
    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self._proof: list[CID] | None = None
        #: ``slices(cid, start, end, size)``: for a leaf stored locally, an object standing for its bytes
        #: [start, end) that the host reads and verifies itself (a protoreg FileSlice), or None to read it here.
        #: Used by :meth:`read` with ``by_reference=True`` only.
        self.slices: Any = None

    def load(self, cid: CID) -> Entry:
        return self.from_block(cid, self.store.get(cid))

    def from_block(self, cid: CID, data: bytes) -> Entry:
        """The entry of a verified block."""
        codec = cid.codec.name
        if codec == "raw" or (codec == "identity"):
            return Entry(cid, "file", len(data), data=data)
        if codec != "dag-pb":
            raise MalformedNode(f"{cid} is {codec}, not UnixFS (dag-pb or raw)")
        node = decode_node(data)
        if node.data is None:
            raise MalformedNode(f"dag-pb node {cid} has no UnixFS Data")
        u = decode_unixfs(node.data)
        if u.type in (FILE, RAW):
            if len(u.blocksizes) != len(node.links):
                raise MalformedNode(f"file node {v1_base32(cid)} has {len(node.links)} links but "
                                    f"{len(u.blocksizes)} blocksizes (UnixFS needs one per link)")
            size = len(u.data or b"") + sum(u.blocksizes)
            if u.filesize is not None and u.filesize != size:
                raise MalformedNode(f"file node {v1_base32(cid)} says filesize {u.filesize} but its data and "
                                    f"blocksizes add up to {size}: refusing to serve bytes that can't be right")
            return Entry(cid, "file", size, node, u)
        if u.type in (DIRECTORY, HAMT_SHARD):
            return Entry(cid, "directory", sum(link.tsize or 0 for link in node.links), node, u)
        if u.type == SYMLINK:
            return Entry(cid, "symlink", len(u.data or b""), node, u)
        raise MalformedNode(f"UnixFS type {u.type} of {cid} can't be served")

    # -- paths --------------------------------------------------------------------------------------------------
    def resolve(self, root: CID, path: str, proof: list[CID] | None = None) -> tuple[Entry, list[CID]]:
        """Walk ``path`` (percent-encoded segments) from ``root``; returns the entry and the CIDs along the way.
        ``proof``, if given, gets every block the walk read, in order (HAMT sub-shards included): what a trustless
        client needs to verify the path."""
        entry = self.load(root)
        trail = [root]
        self._proof = proof
        if proof is not None:
            proof.append(root)
        for raw_segment in [s for s in path.split("/") if s]:
            name = unquote(raw_segment)
            if entry.kind != "directory":
                raise NoSuchPath(f"{'/'.join(str(c) for c in trail)}: not a directory, can't look up {name!r}")
            child = self.lookup(entry, name)
            if child is None:
                self._proof = None
                raise NoSuchPath(f"no entry named {name!r} in directory {v1_base32(entry.cid)}")
            entry = self.load(child)
            trail.append(child)
            if proof is not None:
                proof.append(child)
        self._proof = None
        return entry, trail

    def lookup(self, directory: Entry, name: str) -> CID | None:
        node, u = _directory_parts(directory)
        if u.type == DIRECTORY:
            for link in node.links:
                if link.name == name:
                    return decode_link(link.hash)
            return None
        return self._hamt_lookup(node, u, name, hamt_hash(name), 0)

    def _hamt_lookup(self, node: PBNode, u: UnixFSData, name: str, digest: bytes, depth: int) -> CID | None:
        if u.type != HAMT_SHARD:
            raise MalformedNode(f"a HAMT link at depth {depth} points to UnixFS type {u.type}, not a HAMTShard")
        if u.hash_type != MURMUR3_X64_64 or not u.fanout or u.fanout & (u.fanout - 1):
            raise MalformedNode(f"HAMT shard with hash type {u.hash_type} and fanout {u.fanout} is not supported")
        bits = u.fanout.bit_length() - 1
        pad = len(f"{u.fanout - 1:X}")
        start = depth * bits
        if start + bits > 64:
            raise MalformedNode("HAMT deeper than the 64-bit hash allows")
        index = (int.from_bytes(digest, "big") >> (64 - start - bits)) & ((1 << bits) - 1)
        prefix = f"{index:0{pad}X}"
        for link in node.links:
            if link.name is None or not link.name.startswith(prefix):
                continue
            if len(link.name) == pad:  # a sub-shard
                child = decode_link(link.hash)
                sub = decode_node(self.store.get(child))
                if getattr(self, "_proof", None) is not None:
                    self._proof.append(child)  # type: ignore[union-attr]
                if sub.data is None:
                    raise MalformedNode(f"HAMT sub-shard {child} has no data")
                return self._hamt_lookup(sub, decode_unixfs(sub.data), name, digest, depth + 1)
            if link.name[pad:] == name:
                return decode_link(link.hash)
        return None

    def list(self, directory: Entry) -> list[DirItem]:
        node, u = _directory_parts(directory)
        if u.type == DIRECTORY:
            return [DirItem(link.name or "", decode_link(link.hash), link.tsize) for link in node.links]
        items: list[DirItem] = []
        self._hamt_list(node, u, items)
        return sorted(items, key=lambda i: i.name)

    def _hamt_list(self, node: PBNode, u: UnixFSData, out: list[DirItem], depth: int = 0) -> None:
        if depth > 64:
            raise MalformedNode("HAMT deeper than the 64-bit hash allows")
        pad = len(f"{(u.fanout or 256) - 1:X}")
        for link in node.links:
            cid = decode_link(link.hash)
            if link.name is not None and len(link.name) == pad:
                sub = decode_node(self.store.get(cid))
                self._hamt_list(sub, decode_unixfs(sub.data or b""), out, depth + 1)
            else:
                out.append(DirItem((link.name or "")[pad:], cid, link.tsize))

    # -- files --------------------------------------------------------------------------------------------------
    def read(self, entry: Entry, start: int = 0, end: int | None = None, *,
             by_reference: bool = False) -> Iterator[Any]:
        """Bytes [start, end) of a file, reading only the blocks the range touches. ``by_reference``: leaves that
        :attr:`slices` can stand for are yielded as its objects instead of bytes (the host verifies and sends them)."""
        end = entry.size if end is None else min(end, entry.size)
        if start >= end:
            return
        yield from self._read(entry, start, end, 0, self.slices if by_reference else None)

    def _read(self, entry: Entry, start: int, end: int, depth: int = 0, slices: Any = None) -> Iterator[Any]:
        if depth > MAX_DEPTH:
            raise MalformedNode(f"file DAG under {v1_base32(entry.cid)} is nested more than {MAX_DEPTH} levels deep")
        if entry.data is not None:  # raw leaf
            yield entry.data if start == 0 and end >= len(entry.data) else entry.data[start:end]
            return
        if entry.node is None or entry.unixfs is None or entry.kind != "file":
            raise MalformedNode(f"{v1_base32(entry.cid)} is a {entry.kind}, not file data: its parent file node is "
                                "malformed")
        inline = entry.unixfs.data or b""
        offset = 0
        if inline:
            if start < len(inline):
                yield inline[start:min(end, len(inline))]
            offset = len(inline)
        links = entry.node.links
        sizes = entry.unixfs.blocksizes  # as many as links: checked in load()
        for link, size in zip(links, sizes, strict=True):
            lo, hi = offset, offset + size
            offset = hi
            if hi <= start:
                continue
            if lo >= end:
                break
            cid = decode_link(link.hash)
            if slices is not None:
                piece = slices(cid, max(0, start - lo), min(size, end - lo), size)
                if piece is not None:
                    yield piece
                    continue
            child = self.load(cid)
            if child.size != size:
                # Never send wrong bytes: a child of another size would shift every byte after it.
                raise MalformedNode(f"file node {v1_base32(entry.cid)} says its child {v1_base32(child.cid)} holds "
                                    f"{size} bytes, but it holds {child.size}")
            yield from self._read(child, max(0, start - lo), min(size, end - lo), depth + 1, slices)

    def range_blocks(self, entry: Entry, start: int, end: int,
                     raw: bytes | None = None) -> Iterator[tuple[CID, bytes]]:
        """The blocks of a file that bytes [start, end) need, with the nodes above them, depth-first
        (``dag-scope=entity`` with ``entity-bytes``); the root block always comes first."""
        yield entry.cid, raw if raw is not None else self.store.get(entry.cid)
        if entry.node is None or entry.unixfs is None:
            return
        offset = len(entry.unixfs.data or b"")
        for link, size in zip(entry.node.links, entry.unixfs.blocksizes, strict=True):
            lo, hi = offset, offset + size
            offset = hi
            if hi <= start or lo >= end:
                if lo >= end:
                    break
                continue
            child = decode_link(link.hash)
            data = self.store.get(child)
            yield from self.range_blocks(self.from_block(child, data), max(0, start - lo), min(size, end - lo), data)

    def entity_blocks(self, entry: Entry) -> Iterator[tuple[CID, bytes]]:
        """``dag-scope=entity`` for a non-file: the node, and for a HAMT directory all of its shard blocks (not the
        entries' own blocks)."""
        yield entry.cid, self.store.get(entry.cid)
        if entry.kind == "directory" and entry.unixfs is not None and entry.unixfs.type == HAMT_SHARD:
            assert entry.node is not None
            pad = len(f"{(entry.unixfs.fanout or 256) - 1:X}")
            for link in entry.node.links:
                if link.name is not None and len(link.name) == pad:
                    yield from self.entity_blocks(self.load(decode_link(link.hash)))

    def walk(self, root: CID) -> Iterator[tuple[CID, bytes]]:
        """Every block of the DAG under ``root`` (depth-first, each once), for CAR export."""
        seen: set[bytes] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            key = bytes(cid.digest)
            if key in seen:
                continue
            seen.add(key)
            data = self.store.get(cid)
            yield cid, data
            if cid.codec.name == "dag-pb":
                stack.extend(decode_link(link.hash) for link in reversed(decode_node(data).links))


def _directory_parts(entry: Entry) -> tuple[PBNode, UnixFSData]:
    if entry.kind != "directory" or entry.node is None or entry.unixfs is None:
        raise MalformedNode(f"{v1_base32(entry.cid)} is a {entry.kind}, not a directory")
    return entry.node, entry.unixfs


def symlink_target(entry: Entry) -> str:
    if entry.kind != "symlink" or entry.unixfs is None:
        raise MalformedNode(f"{v1_base32(entry.cid)} is a {entry.kind}, not a symlink")
    return (entry.unixfs.data or b"").decode("utf-8", "replace")
