"""dag-pb (ipld specs/codecs/dag-pb) and the UnixFS Data message, encoded and decoded by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

from ipfs_core import MalformedNode

RAW, DIRECTORY, FILE, METADATA, SYMLINK, HAMT_SHARD = range(6)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise MalformedNode("truncated or oversized varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"a varint is unsigned, got {n}")  # (n >>= 7 never reaches 0 for a negative n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf: bytes):  # type: ignore[no-untyped-def]
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise MalformedNode("length-delimited field runs past the end of the node")
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise MalformedNode(f"unsupported protobuf wire type {wire} in field {num}")
        yield num, wire, value


@dataclass
class PBLink:
    hash: bytes
    name: str | None = None
    tsize: int | None = None


@dataclass
class PBNode:
    links: list[PBLink] = field(default_factory=list)
    data: bytes | None = None


def _decode_link(buf: bytes) -> PBLink:
    """A PBLink, strictly: Hash (1) first and required, then Name (2), then Tsize (3), each at most once."""
    link = PBLink(b"")
    last = 0
    for num, wire, value in _fields(buf):
        if num <= last:
            raise MalformedNode(f"PBLink field {num} is repeated or out of order (dag-pb requires Hash, Name, Tsize "
                                "in that order, each at most once)")
        last = num
        if num == 1 and wire == 2:
            link.hash = bytes(value)
        elif num == 2 and wire == 2:
            try:
                link.name = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedNode("PBLink Name is not valid UTF-8") from None
        elif num == 3 and wire == 0:
            link.tsize = value
        else:
            raise MalformedNode(f"unexpected field {num} (wire type {wire}) in PBLink: dag-pb allows only "
                                "Hash (1, bytes), Name (2, bytes) and Tsize (3, varint)")
    if last == 0 or not link.hash:
        raise MalformedNode("PBLink without a Hash: every dag-pb link must name the CID it points to")
    return link


def decode_node(buf: bytes) -> PBNode:
    """A PBNode per the dag-pb spec: Links (field 2) first, then at most one Data (field 1); nothing else."""
    node = PBNode()
    for num, wire, value in _fields(buf):
        if num == 2 and wire == 2:
            if node.data is not None:
                raise MalformedNode("PBNode has a Link after its Data: dag-pb requires all Links before Data")
            node.links.append(_decode_link(value))
        elif num == 1 and wire == 2:
            if node.data is not None:
                raise MalformedNode("PBNode has more than one Data field")
            node.data = bytes(value)
        else:
            raise MalformedNode(f"unexpected field {num} (wire type {wire}) in PBNode: dag-pb allows only "
                                "Links (2, bytes) and Data (1, bytes)")
    return node


def _ld(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def encode_node(node: PBNode) -> bytes:
    out = bytearray()
    for link in node.links:
        body = _ld(1, link.hash)
        if link.name is not None:
            body += _ld(2, link.name.encode())
        if link.tsize is not None:
            body += varint(3 << 3) + varint(link.tsize)
        out += _ld(2, body)
    if node.data is not None:
        out += _ld(1, node.data)
    return bytes(out)


@dataclass
class UnixFSData:
    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None


def decode_unixfs(buf: bytes) -> UnixFSData:
    u = UnixFSData(-1)
    for num, wire, value in _fields(buf):
        if num == 1 and wire == 0:
            u.type = value
        elif num == 2 and wire == 2:
            u.data = bytes(value)
        elif num == 3 and wire == 0:
            u.filesize = value
        elif num == 4 and wire == 0:
            u.blocksizes.append(value)
        elif num == 4 and wire == 2:  # packed
            pos = 0
            while pos < len(value):
                v, pos = read_varint(value, pos)
                u.blocksizes.append(v)
        elif num == 5 and wire == 0:
            u.hash_type = value
        elif num == 6 and wire == 0:
            u.fanout = value
        elif num in (7, 8):
            continue  # mode, mtime: not used for serving
        else:
            raise MalformedNode(f"unexpected field {num} in UnixFS Data")
    if u.type not in range(6):
        raise MalformedNode(f"UnixFS Data has no valid Type ({u.type})")
    return u


def encode_unixfs(u: UnixFSData) -> bytes:
    out = bytearray(varint(1 << 3) + varint(u.type))
    if u.data is not None:
        out += _ld(2, u.data)
    if u.filesize is not None:
        out += varint(3 << 3) + varint(u.filesize)
    for bs in u.blocksizes:
        out += varint(4 << 3) + varint(bs)
    if u.hash_type is not None:
        out += varint(5 << 3) + varint(u.hash_type)
    if u.fanout is not None:
        out += varint(6 << 3) + varint(u.fanout)
    return bytes(out)
