"""Host-side access to the built-in ipfs bundle's store: ``protoreg ipfs import/add`` and ``protoreg serve``.

The handler's helper modules live in its bundle (handlers/ipfs/ipfs_core); the parent imports the same code to
fill the block store that the sandboxed worker reads through its data directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["IPFS_BUNDLE", "data_dir_for", "default_state_dir", "import_record", "ipfs_core", "publish_record", "store_for"]

IPFS_BUNDLE = Path(__file__).resolve().parents[1] / "handlers" / "ipfs"
DEMO_CAR = IPFS_BUNDLE / "demo-site.car"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "protoreg"


def ipfs_core() -> Any:
    if str(IPFS_BUNDLE) not in sys.path:
        sys.path.insert(0, str(IPFS_BUNDLE))
    import ipfs_core.blocks
    import ipfs_core.car
    import ipfs_core.cids
    import ipfs_core.dagpb
    import ipfs_core.gateway
    import ipfs_core.importer
    import ipfs_core.ipns
    import ipfs_core.network
    import ipfs_core.unixfs

    return ipfs_core


def store_for(extension: Any, state_dir: Path) -> Any:
    """The block store the extension's worker uses, under the Session's state directory."""
    from protoreg.broker import Broker

    data = Broker(data_root=state_dir / "data").data_dir(extension)
    if data is None:
        raise PermissionError(f"{extension.id} has no data directory: its manifest lacks the 'storage' permission")
    return ipfs_core().blocks.BlockStore(data / "blocks")


def data_dir_for(extension: Any, state_dir: Path) -> Path:
    from protoreg.broker import Broker

    data = Broker(data_root=state_dir / "data").data_dir(extension)
    if data is None:
        raise PermissionError(f"{extension.id} has no data directory: its manifest lacks the 'storage' permission")
    return data


def import_record(extension: Any, state_dir: Path, raw: bytes, name_text: str | None = None) -> Any:
    """Verify an IPNS record and store it if it beats the stored one; returns the verified Record.
    Without ``name_text`` the name is the record's own key (an ed25519 record carries it in the name only, so
    then the name is required unless the record has a pubKey)."""
    ipns = ipfs_core().ipns
    if name_text is None:
        entry = ipns.IpnsEntry()
        entry.ParseFromString(raw)
        if not entry.HasField("pubKey"):
            raise ValueError("the record carries no public key: give the name (k51...) it belongs to")
        name = ipns.name_for_public_key(entry.pubKey)
    else:
        name, _ = ipns.parse_name(name_text)
    record = ipns.verify_record(name, raw)
    path = data_dir_for(extension, state_dir) / "ipns" / f"{name.text}.ipns-record"
    try:
        current = ipns.verify_record(name, path.read_bytes())
    except (OSError, ipns.RecordRefused):
        current = None
    if current is not None and not record.better_than(current):
        raise ValueError(f"the stored record for {name.text} (sequence {current.sequence}) is as new or newer "
                         f"than this one (sequence {record.sequence}); kept it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return record


def publish_record(extension: Any, state_dir: Path, key_file: Path, value: str, *, lifetime_hours: float = 48,
                   ttl_seconds: int = 300) -> Any:
    """Sign a record for ``value`` with the ed25519 key in ``key_file`` (``protoreg keygen``'s PEM), one sequence
    above the stored record, and store it."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ipns = ipfs_core().ipns
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{key_file} is not an ed25519 private key (create one with protoreg keygen)")
    ipns.parse_value(value)
    name, _ = ipns.create_record(key, value, 0)
    path = data_dir_for(extension, state_dir) / "ipns" / f"{name.text}.ipns-record"
    try:
        seq = ipns.verify_record(name, path.read_bytes()).sequence + 1
    except (OSError, ipns.RecordRefused):
        seq = 0
    _, raw = ipns.create_record(key, value, seq, lifetime=dt.timedelta(hours=lifetime_hours),
                                ttl=dt.timedelta(seconds=ttl_seconds))
    return import_record(extension, state_dir, raw, name.text)
