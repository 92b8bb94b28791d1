"""CAR files (ipld specs/transport/car): CARv1 and CARv2 reading, CARv1 writing, verified import."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from multiformats import CID

from ipfs_core import CorruptBlock, InvalidCID, IpfsError, MalformedNode
from ipfs_core.blocks import BlockStore
from ipfs_core.cids import MAX_BLOCK, checked, cid_bytes, v1_base32
from ipfs_core.dagpb import read_varint, varint

PRAGMA_V2 = bytes.fromhex("0aa16776657273696f6e02")


class CarError(IpfsError):
    status = 400


# -- a minimal dag-cbor subset: what a CAR header uses ----------------------------------------------------------
#: A CAR header is {roots: [CID, ...], version: 1}: three levels. Deeper nesting is refused, not recursed into.
MAX_HEADER_DEPTH = 8


def _cbor_decode(buf: bytes, pos: int = 0, depth: int = 0, base: int = 0) -> tuple[Any, int]:
    """Decode one item at ``pos``; ``base`` is the header's offset in the CAR, for error messages."""
    if pos >= len(buf):
        raise CarError(f"CAR header truncated at byte {base + pos}")
    if depth > MAX_HEADER_DEPTH:
        raise CarError(f"CAR header nested more than {MAX_HEADER_DEPTH} levels deep at byte {base + pos}: a header "
                       "is {roots: [CID, ...], version: 1}")
    start = pos
    ib = buf[pos]
    major, info = ib >> 5, ib & 31
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        if pos + n > len(buf):
            raise CarError(f"CAR header truncated at byte {base + pos}")
        arg = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    else:
        raise CarError(f"unsupported CBOR item (indefinite length or reserved) in the CAR header at byte "
                       f"{base + start}")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        if pos + arg > len(buf):
            raise CarError(f"CAR header truncated in a {'byte' if major == 2 else 'text'} string at byte {base + pos}")
        data = buf[pos:pos + arg]
        if major == 2:
            return bytes(data), pos + arg
        try:
            return data.decode(), pos + arg
        except UnicodeDecodeError:
            raise CarError(f"the CAR header's text string at byte {base + start} is not UTF-8") from None
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _cbor_decode(buf, pos, depth + 1, base)
            items.append(item)
        return items, pos
    if major == 5:
        out = {}
        for _ in range(arg):
            key_at = pos
            k, pos = _cbor_decode(buf, pos, depth + 1, base)
            if not isinstance(k, str):
                raise CarError(f"the CAR header has a map key that is not a string at byte {base + key_at} "
                               "(dag-cbor map keys are strings)")
            v, pos = _cbor_decode(buf, pos, depth + 1, base)
            out[k] = v
        return out, pos
    if major == 6 and arg == 42:
        raw, pos = _cbor_decode(buf, pos, depth + 1, base)
        if not isinstance(raw, bytes) or not raw.startswith(b"\x00"):
            raise CarError(f"malformed CID in the CAR header at byte {base + start}: a CID link is the byte string "
                           "0x00 + the binary CID")
        try:
            return checked(CID.decode(raw[1:])), pos
        except Exception as exc:  # multiformats raises its own error types for each kind of bad CID
            raise CarError(f"malformed CID in the CAR header at byte {base + start}: {exc}") from None
    raise CarError(f"unsupported CBOR major type {major} in the CAR header at byte {base + start}")


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
MAX_SECTION = MAX_BLOCK + 1024  # a block plus its CID; anything longer is refused before it is read


class _Stream:
    """Reads forward from any binary file object (pipes too), counting the offset itself."""

    def __init__(self, f: BinaryIO, prefix: bytes = b"") -> None:
        self.f, self.prefix, self.pos = f, prefix, 0

    def read(self, n: int) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix[:n], self.prefix[n:]
            if len(out) < n:
                out += self.f.read(n - len(out))
        else:
            out = self.f.read(n)
        while len(out) < n:  # short reads from pipes and sockets
            more = self.f.read(n - len(out))
            if not more:
                break
            out += more
        self.pos += len(out)
        return out

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, 1 << 16)))
            if not got:
                raise CarError(f"CARv2 truncated before its data payload at byte {self.pos + n}")
            n -= got


def _read_varint(f: _Stream) -> int | None:
    value = shift = 0
    first = True
    while True:
        b = f.read(1)
        if not b:
            if first:
                return None
            raise CarError(f"CAR truncated inside a section length at byte {f.pos}")
        first = False
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CarError(f"oversized varint in CAR at byte {f.pos}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _split_cid(section: bytes) -> tuple[CID, bytes]:
    """The CID at the start of a section and the block after it; ValueError/IndexError if malformed."""
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        if len(section) < 34:
            raise ValueError("CIDv0 multihash cut short")
        return checked(CID.decode(section[:34])), section[34:]
    pos = 0
    for _ in range(3):  # version, codec, hash function
        while section[pos] & 0x80:
            pos += 1
        pos += 1
    length, pos = read_varint(section, pos)
    end = pos + length
    if end > len(section):
        raise ValueError("multihash digest runs past the end of the section")
    return checked(CID.decode(section[:end])), section[end:]


def _name_partial(section: bytes) -> str:
    try:
        return f"block {v1_base32(_split_cid(section)[0])} "
    except Exception:
        return "a block whose CID is cut short "


@dataclass
class CarReader:
    f: _Stream
    roots: list[CID] = field(default_factory=list)
    version: int = 1
    _limit: int | None = None

    @classmethod
    def open(cls, f: BinaryIO) -> CarReader:
        """Read the header of a CARv1 or CARv2 (pragma, 40-byte header, inner CARv1) from ``f``; ``f`` need not
        be seekable."""
        stream = _Stream(f)
        head = stream.read(len(PRAGMA_V2))
        if head != PRAGMA_V2:
            stream.prefix, stream.pos = head, 0
            return cls._open_v1(stream)
        hdr = stream.read(40)
        if len(hdr) != 40:
            raise CarError("truncated CARv2 header: expected 40 bytes after the pragma")
        data_offset, data_size, _index = struct.unpack("<QQQ", hdr[16:40])
        if data_offset < stream.pos:
            raise CarError(f"CARv2 data offset {data_offset} points inside its own header")
        stream.skip(data_offset - stream.pos)
        reader = cls._open_v1(stream)
        reader.version = 2
        reader._limit = data_offset + data_size
        return reader

    @classmethod
    def _open_v1(cls, f: _Stream) -> CarReader:
        n = _read_varint(f)
        if n is None or n == 0 or n > 1 << 20:
            raise CarError("not a CAR file: missing, empty or oversized header (CARv1 starts with a varint length "
                           "and a dag-cbor map {roots, version: 1})")
        start = f.pos
        raw = f.read(n)
        if len(raw) != n:
            raise CarError(f"CAR header truncated: expected {n} bytes, got {len(raw)}")
        header, _ = _cbor_decode(raw, base=start)
        if not isinstance(header, dict) or header.get("version") != 1 or not isinstance(header.get("roots"), list):
            raise CarError(f"not a CARv1 header at byte {start}: expected {{roots: [CID, ...], version: 1}}, got "
                           f"{_short(header)}")
        roots = header["roots"]
        bad = next((i for i, r in enumerate(roots) if not isinstance(r, CID)), None)
        if bad is not None:
            raise CarError(f"the CAR header's roots[{bad}] (header at byte {start}) is {_short(roots[bad])}, not a "
                           "CID link")
        return cls(f, list(roots))

    def blocks(self) -> Iterator[tuple[CID, bytes, int]]:
        """(cid, data, offset) for each section; raises CarError naming the offset (and CID) of a bad section."""
        while self._limit is None or self.f.pos < self._limit:
            offset = self.f.pos
            n = _read_varint(self.f)
            if n is None:
                return
            if n == 0:
                if self._limit is not None:
                    return  # CARv2 padding
                raise CarError(f"empty section at byte {offset} of the CAR: every section holds a CID and a block")
            if n > MAX_SECTION:
                raise CarError(f"the section at byte {offset} of the CAR declares {n} bytes, more than a block of at "
                               f"most {MAX_BLOCK} bytes plus its CID")
            section = self.f.read(n)
            if len(section) != n:
                raise CarError(f"CAR truncated in {_name_partial(section)}at byte {offset}: the section declares {n} "
                               f"bytes but only {len(section)} remain")
            try:
                cid, data = _split_cid(section)
            except (IndexError, ValueError, KeyError, MalformedNode, InvalidCID) as exc:
                raise CarError(f"malformed CID in the section at byte {offset} of the CAR: {exc}") from None
            yield cid, data, offset


@dataclass
class ImportReport:
    roots: list[CID]
    blocks: int = 0
    new_blocks: int = 0
    bytes: int = 0


def import_car(source: BinaryIO | str | os.PathLike[str], store: BlockStore,
               progress: Callable[[int], None] | None = None) -> ImportReport:
    """Verify and store every block of a CAR (a path or a binary file object). ``progress`` gets the byte offset
    reached after each block. A corrupt or truncated CAR raises CarError naming the block; good blocks stay."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return import_car(f, store, progress)
    reader = CarReader.open(source)
    report = ImportReport(reader.roots)
    blocks = reader.blocks()
    while True:
        try:
            item = next(blocks, None)
        except CarError as exc:
            raise CarError(f"{str(exc).rstrip('.')}. The {report.blocks} blocks before it were imported") from None
        if item is None:
            return report
        cid, data, offset = item
        try:
            added = store.put(cid, data)
        except CorruptBlock as exc:
            raise CarError(f"block {v1_base32(cid)} at byte {offset} of the CAR failed verification: "
                           f"{str(exc).rstrip('.')}. "
                           f"The {report.blocks} blocks before it were imported") from None
        report.blocks += 1
        report.new_blocks += int(added)
        report.bytes += len(data)
        if progress is not None:
            progress(reader.f.pos)


def write_car(roots: Iterable[CID], blocks: Iterable[tuple[CID, bytes]]) -> Iterator[bytes]:
    header = encode_header(roots)
    yield varint(len(header)) + header
    for cid, data in blocks:
        raw = cid_bytes(cid)
        yield varint(len(raw) + len(data)) + raw + data
