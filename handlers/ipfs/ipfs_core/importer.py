"""Build UnixFS like ``ipfs add`` with kubo's defaults: CIDv1, raw leaves, 256 KiB fixed-size chunks, a balanced
DAG of at most 174 links per node, sha2-256; directories as plain dag-pb directories with links sorted by name,
symlinks as UnixFS Symlink nodes, hidden files skipped (kubo's defaults).

Not reproduced: kubo's automatic HAMT sharding of directories whose node would exceed 256 KiB (roughly 3,000+
entries); such directories are built as one plain dag-pb node, which readers accept but whose CID differs from
kubo's."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

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


def add_path(path: str | Path, emit: Emit, *, chunk: int = CHUNK, max_links: int = MAX_LINKS) -> Built:
    p = Path(path)
    if p.is_symlink():
        node = encode_node(PBNode([], encode_unixfs(UnixFSData(SYMLINK, os.fsencode(os.readlink(p))))))
        cid = dagpb_cid(node)
        emit(cid, node)
        return Built(cid, 0, len(node))
    if p.is_file():
        with p.open("rb") as f:
            return add_file(f, emit, chunk=chunk, max_links=max_links)
    if not p.is_dir():
        raise FileNotFoundError(f"{p} is neither a file nor a directory")
    entries = []
    for child in sorted(p.iterdir(), key=lambda c: c.name.encode()):
        if child.name.startswith("."):
            continue
        entries.append((child.name, add_path(child, emit, chunk=chunk, max_links=max_links)))
    node = encode_node(PBNode([PBLink(bytes(b.cid), name, b.tsize) for name, b in entries],
                              encode_unixfs(UnixFSData(DIRECTORY))))
    cid = dagpb_cid(node)
    emit(cid, node)
    return Built(cid, sum(b.size for _, b in entries), len(node) + sum(b.tsize for _, b in entries))


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
        def emit(cid: CID, data: bytes) -> None:
            raw = bytes(cid)
            spool.write(varint(len(raw) + len(data)) + raw + data)

        built = add_path(path, emit, **kw)
        header = encode_header([built.cid])
        out.write(varint(len(header)) + header)
        spool.seek(0)
        shutil.copyfileobj(spool, out, 1 << 20)
    return built
