"""CID parsing and block verification."""

from __future__ import annotations

import functools
import hashlib

from multiformats import CID, multihash

from ipfs_core import CorruptBlock, InvalidCID, MalformedNode

MAX_BLOCK = 2 * 1024 * 1024
SUPPORTED_CODECS = {"raw", "dag-pb", "dag-cbor", "dag-json", "identity"}


def checked(cid: CID) -> CID:
    """``cid`` if its multihash is usable (a digest no longer than its hash function makes); else InvalidCID.
    multiformats accepts such CIDs at decode time and raises only when the digest is first read."""
    try:
        _hash_info(cid)
    except Exception as exc:
        raise InvalidCID(f"{cid} has an invalid multihash: {exc}") from None
    return cid


def parse_cid(text: str | bytes) -> CID:
    try:
        cid = checked(CID.decode(text))
    except InvalidCID as exc:
        raise InvalidCID(f"{text!r} is not a valid CID: {exc}") from None
    except Exception as exc:
        hint = ""
        if isinstance(text, str) and text[:2].lower() == "qm":
            hint = (" (a CIDv0 is case-sensitive base58 and can't be a URL host, which is lowercased; use its "
                    "CIDv1 base32 form, bafy...)")
        raise InvalidCID(f"{text!r} is not a valid CID: {exc}{hint}") from None
    if cid.codec.name not in SUPPORTED_CODECS:
        raise InvalidCID(f"CID {text} uses the codec {cid.codec.name}, which this gateway can't serve; use a CID "
                         f"with one of: {', '.join(sorted(SUPPORTED_CODECS))}")
    return cid


def v1_base32(cid: CID) -> str:
    return str(cid.set(version=1, base="base32"))


def is_identity(cid: CID) -> bool:
    return _hash_info(cid)[0] == "identity"


@functools.lru_cache(maxsize=65536)
def decode_link(raw: bytes) -> CID:
    """CID.decode for link hashes, cached (multiformats validates every call, which dominates large reads).
    A link whose Hash is not a CID makes its node malformed."""
    try:
        return checked(CID.decode(raw))
    except Exception as exc:
        raise MalformedNode(f"a dag-pb link Hash ({raw[:40].hex()}) is not a valid CID: {exc}") from None


@functools.lru_cache(maxsize=65536)
def _hash_info(cid: CID) -> tuple[str, bytes, bytes]:
    return cid.hashfun.name, bytes(cid.raw_digest), bytes(cid.digest)


@functools.lru_cache(maxsize=65536)
def cid_bytes(cid: CID) -> bytes:
    """The binary CID, cached (multiformats type-checks every call)."""
    return bytes(cid)


def digest_matches(cid: CID, data: bytes) -> bool:
    name, raw, full = _hash_info(cid)
    if name == "sha2-256":
        return hashlib.sha256(data).digest() == raw
    if name == "identity":
        return data == raw
    try:
        return bytes(multihash.digest(data, name)) == full
    except (KeyError, ValueError) as exc:
        raise CorruptBlock(f"can't verify a block hashed with {name}: this hash function is not available ({exc}); "
                           "only blocks whose hash can be checked are stored or served") from None


def verify(cid: CID, data: bytes) -> bytes:
    if len(data) > MAX_BLOCK:
        raise CorruptBlock(f"block {v1_base32(cid)} is {len(data)} bytes, over the {MAX_BLOCK}-byte limit")
    if not digest_matches(cid, data):
        raise CorruptBlock(f"block {v1_base32(cid)} does not match its hash: the data is corrupt or forged")
    return data


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def dagpb_cid(data: bytes) -> CID:
    return CID("base32", 1, "dag-pb", multihash.digest(data, "sha2-256"))
