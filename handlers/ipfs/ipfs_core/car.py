"""CAR files (ipld specs/transport/car): CARv1 and CARv2 reading, CARv1 writing, verified import."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from multiformats import CID

from ipfs_core import CorruptBlock, IpfsError
from ipfs_core.blocks import BlockStore
from ipfs_core.cids import v1_base32
from ipfs_core.dagpb import varint

PRAGMA_V2 = bytes.fromhex("0aa16776657273696f6e02")


class CarError(IpfsError):
    status = 400


# -- a minimal dag-cbor subset: what a CAR header uses ----------------------------------------------------------
def _cbor_decode(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    if pos >= len(buf):
        raise CarError("truncated CAR header")
    ib = buf[pos]
    major, info = ib >> 5, ib & 31
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        arg = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    else:
        raise CarError("unsupported CBOR item in CAR header")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        data = buf[pos:pos + arg]
        return (bytes(data) if major == 2 else data.decode()), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _cbor_decode(buf, pos)
            items.append(item)
        return items, pos
    if major == 5:
        out = {}
        for _ in range(arg):
            k, pos = _cbor_decode(buf, pos)
            v, pos = _cbor_decode(buf, pos)
            out[k] = v
        return out, pos
    if major == 6 and arg == 42:
        raw, pos = _cbor_decode(buf, pos)
        if not isinstance(raw, bytes) or not raw.startswith(b"\x00"):
            raise CarError("malformed CID in CAR header")
        return CID.decode(raw[1:]), pos
    raise CarError(f"unsupported CBOR major type {major} in CAR header")


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError("too large")


def encode_header(roots: Iterable[CID]) -> bytes:
    roots = list(roots)
    out = _cbor_head(5, 2) + _cbor_head(3, 5) + b"roots" + _cbor_head(4, len(roots))
    for r in roots:
        raw = b"\x00" + bytes(r)
        out += _cbor_head(6, 42) + _cbor_head(2, len(raw)) + raw
    out += _cbor_head(3, 7) + b"version" + _cbor_head(0, 1)
    return out


# -- reading ----------------------------------------------------------------------------------------------------
def _read_varint(f: BinaryIO) -> int | None:
    value = shift = 0
    first = True
    while True:
        b = f.read(1)
        if not b:
            if first:
                return None
            raise CarError("truncated varint in CAR")
        first = False
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CarError("oversized varint in CAR")


def _split_cid(section: bytes) -> tuple[CID, bytes]:
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        return CID.decode(section[:34]), section[34:]
    pos = 0
    for _ in range(2):  # version, codec
        while section[pos] & 0x80:
            pos += 1
        pos += 1
    start_mh = pos
    while section[pos] & 0x80:
        pos += 1
    pos += 1
    length, shift = 0, 0
    while True:
        b = section[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    end = pos + length
    if end > len(section) or start_mh == 0:
        raise CarError("malformed CID in CAR section")
    return CID.decode(section[:end]), section[end:]


@dataclass
class CarReader:
    f: BinaryIO
    roots: list[CID] = field(default_factory=list)
    version: int = 1
    _limit: int | None = None

    @classmethod
    def open(cls, f: BinaryIO) -> CarReader:
        head = f.read(len(PRAGMA_V2))
        if head == PRAGMA_V2:
            hdr = f.read(40)
            if len(hdr) != 40:
                raise CarError("truncated CARv2 header")
            data_offset, data_size, _index = struct.unpack("<QQQ", hdr[16:40])
            f.seek(data_offset)
            reader = cls._open_v1(f)
            reader.version = 2
            reader._limit = data_offset + data_size
            return reader
        f.seek(0)
        return cls._open_v1(f)

    @classmethod
    def _open_v1(cls, f: BinaryIO) -> CarReader:
        n = _read_varint(f)
        if n is None or n > 1 << 20:
            raise CarError("missing or oversized CAR header")
        header, _ = _cbor_decode(f.read(n))
        if not isinstance(header, dict) or header.get("version") != 1 or not isinstance(header.get("roots"), list):
            raise CarError(f"not a CARv1 header: {header!r}")
        return cls(f, list(header["roots"]))

    def blocks(self) -> Iterator[tuple[CID, bytes, int]]:
        """(cid, data, offset) for each section; raises CarError on truncation."""
        while self._limit is None or self.f.tell() < self._limit:
            offset = self.f.tell()
            n = _read_varint(self.f)
            if n is None:
                return
            if n == 0 and self._limit is not None:
                return
            section = self.f.read(n)
            if len(section) != n:
                raise CarError(f"CAR truncated in the section at byte {offset}: expected {n} bytes, got "
                               f"{len(section)}")
            cid, data = _split_cid(section)
            yield cid, data, offset


@dataclass
class ImportReport:
    roots: list[CID]
    blocks: int = 0
    new_blocks: int = 0
    bytes: int = 0


def import_car(f: BinaryIO, store: BlockStore, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Verify and store every block. A corrupt or truncated CAR raises (naming the block); good blocks stay."""
    reader = CarReader.open(f)
    report = ImportReport(reader.roots)
    for cid, data, offset in reader.blocks():
        try:
            added = store.put(cid, data)
        except CorruptBlock as exc:
            raise CarError(f"block {v1_base32(cid)} at byte {offset} of the CAR failed verification: {exc}. "
                           f"The {report.blocks} blocks before it were imported") from None
        report.blocks += 1
        report.new_blocks += int(added)
        report.bytes += len(data)
        if progress is not None:
            progress(f.tell())
    return report


def write_car(roots: Iterable[CID], blocks: Iterable[tuple[CID, bytes]]) -> Iterator[bytes]:
    header = encode_header(roots)
    yield varint(len(header)) + header
    for cid, data in blocks:
        raw = bytes(cid)
        yield varint(len(raw) + len(data)) + raw + data
