"""IPNS names and records (ipfs specs ``src/ipns/ipns-record.md``), verified in the spec's order.

A name is a libp2p-key CIDv1; its canonical text is base36 (``k51...``), which fits one DNS label. The key is
either inlined (identity multihash of the protobuf ``PublicKey``, ed25519) or hashed (sha2-256; the record then
carries the key in ``pubKey``, RSA). A record is the protobuf ``IpnsEntry`` whose ``data`` field is DAG-CBOR
(Value, Validity, ValidityType, Sequence, TTL); ``signatureV2`` signs ``b"ipns-signature:" + data``.

Verification, in order; the first failing step is reported (``RecordRefused.step``):
  1. size: the serialized record is at most 10 KiB;
  2. signature: ``data`` and ``signatureV2`` present, and the signature verifies with the key the name commits to
     (V1 signatures are ignored; a V1-only record is refused);
  3. fields: the V1 protobuf fields, where present, equal their copy in the CBOR ``data``;
  4. validity: EOL, not passed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from multiformats import CID, multibase, multihash, varint

from ipfs_core import IpfsError

MAX_RECORD = 10 * 1024
SIGNATURE_PREFIX = b"ipns-signature:"
RECORD_TYPE = "application/vnd.ipfs.ipns-record"
MAX_DEPTH = 32
_LIBP2P_KEY = 0x72
_KEY_TYPES = {0: "RSA", 1: "Ed25519", 2: "Secp256k1", 3: "ECDSA"}


class InvalidName(IpfsError):
    status = 400


class RecordRefused(IpfsError):
    """A record failed verification; ``step`` is the spec step that failed (size, signature, fields, validity)."""

    status = 502

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"IPNS record refused at the {step} check: {message}")
        self.step = step


# -- protobuf messages, built from a descriptor (no generated code) -----------------------------------------------
def _messages() -> tuple[Any, Any]:
    f = descriptor_pb2.FileDescriptorProto(name="protoreg_ipns.proto", package="protoreg_ipns", syntax="proto2")
    T = descriptor_pb2.FieldDescriptorProto
    entry = f.message_type.add(name="IpnsEntry")
    for name, number, kind in (("value", 1, T.TYPE_BYTES), ("signatureV1", 2, T.TYPE_BYTES),
                               ("validityType", 3, T.TYPE_UINT64), ("validity", 4, T.TYPE_BYTES),
                               ("sequence", 5, T.TYPE_UINT64), ("ttl", 6, T.TYPE_UINT64),
                               ("pubKey", 7, T.TYPE_BYTES), ("signatureV2", 8, T.TYPE_BYTES),
                               ("data", 9, T.TYPE_BYTES)):
        entry.field.add(name=name, number=number, type=kind, label=T.LABEL_OPTIONAL)
    key = f.message_type.add(name="PublicKey")
    key.field.add(name="Type", number=1, type=T.TYPE_UINT64, label=T.LABEL_OPTIONAL)
    key.field.add(name="Data", number=2, type=T.TYPE_BYTES, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("protoreg_ipns.IpnsEntry")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("protoreg_ipns.PublicKey")))


IpnsEntry, PublicKeyMsg = _messages()


# -- names ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Name:
    mh: bytes  # the multihash of the protobuf PublicKey

    @property
    def text(self) -> str:
        """Canonical: CIDv1, libp2p-key, base36 (lowercase, one DNS label)."""
        return str(CID("base36", 1, "libp2p-key", self.mh))

    def inlined_key(self) -> bytes | None:
        code, _, digest = _split_multihash(self.mh)
        return digest if code == 0x00 else None

    def __str__(self) -> str:
        return self.text


def _split_multihash(mh: bytes) -> tuple[int, int, bytes]:
    try:
        code, n1, _ = varint.decode_raw(mh)
        size, n2, _ = varint.decode_raw(mh[n1:])
        digest = bytes(mh[n1 + n2:])
    except Exception as exc:
        raise InvalidName(f"not a multihash: {exc}") from None
    if digest is None or len(digest) != size:
        raise InvalidName("not a multihash: its length prefix does not match")
    return code, size, digest


def parse_name(text: str) -> tuple[Name, bool]:
    """(name, canonical?): a libp2p-key CID in any base, or a legacy base58 PeerID (``12D3Koo...``, ``Qm...``)."""
    if "." in text:
        raise InvalidName(f"{text!r} looks like a DNSLink name; DNSLink is not supported, use a key name (k51...)")
    try:
        if text[:1] in ("1", "Q"):  # legacy PeerID: a bare base58btc multihash
            mh = multibase.decode("z" + text)
            _split_multihash(mh)
            return Name(bytes(mh)), False
        cid = CID.decode(text)
    except InvalidName:
        raise
    except Exception as exc:
        raise InvalidName(f"{text!r} is not an IPNS name (a libp2p-key CID such as k51..., or a PeerID): "
                          f"{exc}") from None
    if cid.codec.code != _LIBP2P_KEY:
        raise InvalidName(f"{text!r} is a CID with codec {cid.codec.name}; IPNS names use libp2p-key (0x72)")
    name = Name(bytes(cid.digest))
    return name, text == name.text


def name_for_public_key(key_pb: bytes) -> Name:
    """Keys up to 42 bytes are inlined (identity multihash), longer ones hashed (sha2-256), as libp2p does."""
    if len(key_pb) <= 42:
        return Name(bytes(multihash.wrap(key_pb, "identity")))
    return Name(bytes(multihash.digest(key_pb, "sha2-256")))


# -- records --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    name: Name
    raw: bytes
    value: str
    sequence: int
    validity: _dt.datetime
    ttl_ns: int

    @property
    def ttl_seconds(self) -> int:
        return max(0, self.ttl_ns // 1_000_000_000)

    def better_than(self, other: Record | None) -> bool:
        """The spec's order: higher sequence wins, then the later validity."""
        if other is None:
            return True
        return (self.sequence, self.validity) > (other.sequence, other.validity)


def _parse_time(raw: bytes) -> _dt.datetime:
    text = raw.decode("ascii")
    # RFC 3339 with nanoseconds ("2033-05-18T03:33:20.000000001Z"): keep microseconds.
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(t: _dt.datetime) -> bytes:
    t = t.astimezone(_dt.UTC)
    return (t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z").encode()


def _public_key(key_pb: bytes) -> Any:
    msg = PublicKeyMsg()
    msg.ParseFromString(key_pb)
    kind, data = _KEY_TYPES.get(msg.Type, str(msg.Type)), msg.Data
    if kind == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if kind in ("RSA", "ECDSA"):
        return serialization.load_der_public_key(data)
    if kind == "Secp256k1":
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), data)
    raise ValueError(f"key type {kind} is not supported")


def _verify_signature(key: Any, signature: bytes, message: bytes) -> None:
    if isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, message)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    else:  # pragma: no cover
        raise InvalidSignature


def verify_record(name: Name, raw: bytes, *, now: _dt.datetime | None = None) -> Record:
    """The record's fields, if it passes every step; else RecordRefused naming the first step that failed."""
    if len(raw) > MAX_RECORD:
        raise RecordRefused("size", f"the record is {len(raw)} bytes, over the {MAX_RECORD}-byte limit")
    entry = IpnsEntry()
    try:
        entry.ParseFromString(raw)
    except Exception as exc:
        raise RecordRefused("signature", f"the record is not a valid IpnsEntry protobuf ({exc})") from None
    if not entry.HasField("signatureV2") or not entry.HasField("data"):
        raise RecordRefused("signature", "the record has no signatureV2 or no data (a V1-only record; V2 is "
                                         "required)")
    inlined = name.inlined_key()
    key_pb = entry.pubKey if entry.HasField("pubKey") else inlined
    if key_pb is None:
        raise RecordRefused("signature", "the name hashes its key but the record carries no pubKey")
    if inlined is not None and entry.HasField("pubKey") and entry.pubKey != inlined:
        raise RecordRefused("signature", "the record's pubKey is not the key inlined in the name")
    if inlined is None and name_for_public_key(key_pb).mh != name.mh:
        raise RecordRefused("signature", f"the record's pubKey does not hash to the name {name.text}")
    try:
        key = _public_key(key_pb)
        _verify_signature(key, entry.signatureV2, SIGNATURE_PREFIX + entry.data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise RecordRefused("signature", f"signatureV2 does not verify with the key of {name.text}"
                                         + (f" ({exc})" if str(exc) else "")) from None
    try:
        data = cbor2.loads(entry.data)
        value, validity = bytes(data["Value"]), bytes(data["Validity"])
        vtype, seq, ttl = int(data["ValidityType"]), int(data["Sequence"]), int(data.get("TTL", 0))
    except Exception as exc:
        raise RecordRefused("fields", f"the signed CBOR data is malformed ({exc!r})") from None
    for field, cbor_value in (("value", value), ("validity", validity), ("validityType", vtype),
                              ("sequence", seq), ("ttl", ttl)):
        if entry.HasField(field) and getattr(entry, field) != cbor_value:
            raise RecordRefused("fields", f"the protobuf field {field} differs from its signed CBOR copy")
    if vtype != 0:
        raise RecordRefused("validity", f"unknown ValidityType {vtype} (only 0, EOL, is defined)")
    try:
        eol = _parse_time(validity)
    except Exception:
        raise RecordRefused("validity", f"Validity {validity[:40]!r} is not an RFC 3339 time") from None
    now = now or _dt.datetime.now(_dt.UTC)
    if eol < now:
        raise RecordRefused("validity", f"the record expired at {validity.decode()}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordRefused("fields", "the Value is not UTF-8") from None
    return Record(name, raw, text, seq, eol, ttl)


def create_record(private_key: ed25519.Ed25519PrivateKey, value: str, sequence: int, *,
                  lifetime: _dt.timedelta = _dt.timedelta(hours=48), ttl: _dt.timedelta = _dt.timedelta(minutes=5),
                  validity: _dt.datetime | None = None, v1_fields: bool = True) -> tuple[Name, bytes]:
    """A V1+V2 record (as kubo writes them) signed with an ed25519 key; returns (name, serialized record)."""
    pub = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_pb = PublicKeyMsg(Type=1, Data=pub).SerializeToString()
    name = name_for_public_key(key_pb)
    eol = format_time(validity or _dt.datetime.now(_dt.UTC) + lifetime)
    ttl_ns = int(ttl.total_seconds() * 1_000_000_000)
    data = cbor2.dumps({"Value": value.encode(), "Validity": eol, "ValidityType": 0, "Sequence": sequence,
                        "TTL": ttl_ns}, canonical=True)
    entry = IpnsEntry(data=data, signatureV2=private_key.sign(SIGNATURE_PREFIX + data))
    if v1_fields:
        entry.value, entry.validity, entry.validityType = value.encode(), eol, 0
        entry.sequence, entry.ttl = sequence, ttl_ns
        entry.signatureV1 = private_key.sign(value.encode() + eol + b"EOL")
    return name, entry.SerializeToString()


def parse_value(value: str) -> tuple[str, str, str]:
    """``/ipfs/<cid>[/path]`` or ``/ipns/<name>[/path]`` → (namespace, root, path)."""
    parts = value.split("/", 3)
    if len(parts) < 3 or parts[0] != "" or parts[1] not in ("ipfs", "ipns") or not parts[2]:
        raise RecordRefused("fields", f"the Value {value[:80]!r} is not /ipfs/<cid> or /ipns/<name>")
    return parts[1], parts[2], ("/" + parts[3]) if len(parts) > 3 else ""


def record_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]
