"""Build UnixFS like ``ipfs add`` with kubo's defaults: CIDv1, raw leaves, 256 KiB fixed-size chunks, a balanced
DAG of at most 174 links per node, sha2-256; directories as plain dag-pb directories with links sorted by name,
symlinks as UnixFS Symlink nodes, hidden files skipped (kubo's defaults).

Not reproduced: kubo's automatic HAMT sharding of directories whose node would exceed 256 KiB (roughly 3,000+
entries); such directories are built as one plain dag-pb node, which readers accept but whose CID differs from
kubo's."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from multiformats import CID

from ipfs_core import IpfsError
from ipfs_core.car import encode_header
from ipfs_core.cids import dagpb_cid, raw_cid
from ipfs_core.dagpb import DIRECTORY, FILE, SYMLINK, PBLink, PBNode, UnixFSData, encode_node, encode_unixfs, varint

CHUNK = 256 * 1024
MAX_LINKS = 174

Emit = Callable[[CID, bytes], None]


@dataclass
class Built:
    cid: CID
    size: int    # file bytes under this node
    tsize: int   # serialized bytes of the whole sub-DAG (a link's Tsize)


def _file_node(children: list[Built], emit: Emit) -> Built:
    u = UnixFSData(FILE, filesize=sum(c.size for c in children), blocksizes=[c.size for c in children])
    node = encode_node(PBNode([PBLink(bytes(c.cid), "", c.tsize) for c in children], encode_unixfs(u)))
    cid = dagpb_cid(node)
    emit(cid, node)
    return Built(cid, u.filesize or 0, len(node) + sum(c.tsize for c in children))


def _read_chunk(f: BinaryIO, n: int) -> bytes:
    """Exactly n bytes unless the stream ends: pipes return short reads, which must not change the chunking."""
    data = f.read(n)
    while 0 < len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def add_file(f: BinaryIO, emit: Emit, *, chunk: int = CHUNK, max_links: int = MAX_LINKS) -> Built:
    """Chunk ``f`` into raw leaves and build the balanced DAG over them (a single chunk is the file's CID)."""
    if chunk < 1 or max_links < 2:
        raise ValueError(f"chunk ({chunk}) must be at least 1 byte and max_links ({max_links}) at least 2")
    leaves: list[Built] = []
    while True:
        data = _read_chunk(f, chunk)
        if not data and leaves:
            break
        cid = raw_cid(data)
        emit(cid, data)
        leaves.append(Built(cid, len(data), len(data)))
        if len(data) < chunk:
            break
    if len(leaves) == 1:
        return leaves[0]
    level = leaves
    while len(level) > 1:
        level = [_file_node(level[i:i + max_links], emit) for i in range(0, len(level), max_links)]
    return level[0]


def add_symlink(target: bytes, emit: Emit) -> Built:
    node = encode_node(PBNode([], encode_unixfs(UnixFSData(SYMLINK, target))))
    cid = dagpb_cid(node)
    emit(cid, node)
    return Built(cid, 0, len(node))


def add_directory(entries: Iterable[tuple[str, Built]], emit: Emit) -> Built:
    """A plain dag-pb directory over ``entries`` (sorted here by the bytes of their names, as kubo does)."""
    ordered = sorted(entries, key=lambda e: e[0].encode())
    node = encode_node(PBNode([PBLink(bytes(b.cid), name, b.tsize) for name, b in ordered],
                              encode_unixfs(UnixFSData(DIRECTORY))))
    cid = dagpb_cid(node)
    emit(cid, node)
    return Built(cid, sum(b.size for _, b in ordered), len(node) + sum(b.tsize for _, b in ordered))


def add_path(path: str | Path, emit: Emit, *, chunk: int = CHUNK, max_links: int = MAX_LINKS) -> Built:
    p = Path(path)
    if p.is_symlink():
        return add_symlink(os.fsencode(os.readlink(p)), emit)
    if p.is_file():
        with p.open("rb") as f:
            return add_file(f, emit, chunk=chunk, max_links=max_links)
    if not p.is_dir():
        raise FileNotFoundError(f"{p} is neither a file nor a directory")
    children = sorted((c for c in p.iterdir() if not c.name.startswith(".")), key=lambda c: c.name.encode())
    return add_directory([(c.name, add_path(c, emit, chunk=chunk, max_links=max_links)) for c in children], emit)


def add_tar(f: BinaryIO, emit: Emit, *, chunk: int = CHUNK, max_links: int = MAX_LINKS) -> Built:
    """``ipfs add`` of a directory that arrives as a tar stream (read once, front to back, never extracted): the
    archive's members are relative to the directory added; regular files, directories and symlinks only; hidden
    names skipped as :func:`add_path` skips them. Memory holds one chunk and one (cid, sizes) entry per member."""
    tree: dict[str, Any] = {}

    def parent_of(parts: list[str]) -> dict[str, Any]:
        node = tree
        for part in parts:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise IpfsError(f"the archive puts {'/'.join(parts)} both as a file and as a directory")
            node = child
        return node

    with tarfile.open(fileobj=f, mode="r|") as archive:
        for member in archive:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if not parts:
                continue  # the directory itself
            if member.name.startswith("/") or ".." in parts:
                raise IpfsError(f"the archive's member {member.name!r} is not a plain relative path")
            if any(p.startswith(".") for p in parts):
                continue
            parent = parent_of(parts[:-1])
            if member.isdir():
                parent_of(parts)
            elif member.isfile():
                data = archive.extractfile(member)
                assert data is not None
                parent[parts[-1]] = add_file(data, emit, chunk=chunk, max_links=max_links)  # type: ignore[arg-type]
            elif member.issym():
                parent[parts[-1]] = add_symlink(os.fsencode(member.linkname), emit)
            else:
                raise IpfsError(f"the archive's member {member.name!r} is neither a file, a directory nor a symlink")

    def build(node: dict[str, Any]) -> Built:
        return add_directory([(name, build(c) if isinstance(c, dict) else c) for name, c in node.items()], emit)

    return build(tree)


def add_to_blocks(path: str | Path, **kw: int) -> tuple[Built, list[tuple[CID, bytes]]]:
    blocks: list[tuple[CID, bytes]] = []
    built = add_path(path, lambda c, d: blocks.append((c, d)), **kw)
    return built, blocks


def iter_blocks(path: str | Path) -> Iterator[tuple[CID, bytes]]:
    yield from add_to_blocks(path)[1]


def add_to_car(path: str | Path, out: BinaryIO, **kw: int) -> Built:
    """``ipfs add`` ``path`` and write the result as a CARv1 (root first in the header) to ``out``. Blocks are
    spooled to a temporary file, not held in memory, because the root CID is known only at the end."""
    with tempfile.TemporaryFile() as spool:
        built, _ = spool_blocks(lambda emit: add_path(path, emit, **kw), spool)
        out.write(car_header(built))
        spool.seek(0)
        shutil.copyfileobj(spool, out, 1 << 20)
    return built


def spool_blocks(build: Callable[[Emit], Built], spool: BinaryIO) -> tuple[Built, int]:
    """Run ``build`` with its blocks written to ``spool`` as CARv1 sections; returns the root and the block count.
    A CAR of the result is :func:`car_header` followed by the spool's bytes."""
    count = 0

    def emit(cid: CID, data: bytes) -> None:
        nonlocal count
        raw = bytes(cid)
        spool.write(varint(len(raw) + len(data)) + raw + data)
        count += 1

    return build(emit), count


def car_header(built: Built) -> bytes:
    header = encode_header([built.cid])
    return varint(len(header)) + header
