"""Stores: TUF repositories (python-tuf) whose targets are extension bundles, and the ceilings they may grant.

A store is a plain TUF repository served from a directory or any static HTTP host::

    DIR/metadata/1.root.json, root.json, timestamp.json, snapshot.json, targets.json, <role>.json
    DIR/targets/<target path>            one bundle file per extension (see protoreg.bundles)
    DIR/keys/online.pem                  the store's online key (timestamp, snapshot): NOT to be published

Roles and keys (Ed25519): the store key (``store init --key``) signs root and targets; an online key made at init
signs snapshot and timestamp, which every publish re-signs. A delegated role (a child store) is limited to the path
prefix ``NAME/`` and signs with its own key; its ceiling (the permissions it may grant) is a signed custom field of
the DelegatedRole, ``"x-protoreg-ceiling": [...]``, always clipped to its parent's ceiling.

Target path of an extension: ``<prefix><ext id>.protoreg`` (prefix ``""`` for the top role, ``NAME/`` for a child);
its signed custom field ``{"protoreg": {"id", "version", "permissions"}}`` binds the bytes to the id and version.

Client side: :class:`StoreClient` refreshes a trusted store with ``tuf.ngclient.Updater`` (rollback, freeze and
mix-and-match protection are TUF's) and downloads a target into memory, verified against its signed length and
hashes; every failure is a :class:`~protoreg.errors.TrustError` naming the store, the role and what to do.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

from protoreg import bundles
from protoreg.errors import TrustError
from protoreg.policy.matchpatterns import parse_pattern

__all__ = [
    "ALL",
    "CEILING_FIELD",
    "Clipped",
    "StoreClient",
    "TrustedStore",
    "clip",
    "covers",
    "delegate",
    "generate_key",
    "init_store",
    "load_private_key",
    "load_public_key",
    "parse_ceiling",
    "publish",
    "revoke",
    "target_path",
]

#: A ceiling that allows everything (the default for a store you trust).
ALL: Final = "*"
CEILING_FIELD: Final = "x-protoreg-ceiling"
REVOKED_FIELD: Final = "x-protoreg-revoked"
ROOT_EXPIRY: Final = timedelta(days=365)
TARGETS_EXPIRY: Final = timedelta(days=90)
ONLINE_EXPIRY: Final = timedelta(days=7)
_SERIALIZER: Final = JSONSerializer(compact=False)


# -- keys -------------------------------------------------------------------------------------------------------
def generate_key(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``path`` (PEM PKCS#8, mode 0600) and its public key to ``path.pub``
    (the TUF/securesystemslib key JSON). Refuses to overwrite."""
    priv = Path(path)
    pub = priv.with_name(priv.name + ".pub")
    signer = CryptoSigner.generate_ed25519()
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_bytes)
    pub.write_text(json.dumps({"keyid": signer.public_key.keyid, **signer.public_key.to_dict()}, indent=2) + "\n")
    return priv, pub


def load_private_key(path: str | os.PathLike[str]) -> CryptoSigner:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise TrustError(f"can't load the private key {path}: {exc}. Pass a key made by protoreg keygen") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"{path} is not an Ed25519 private key. Make one with protoreg keygen")
    return CryptoSigner(key)


def load_public_key(path: str | os.PathLike[str]) -> Key:
    """A public key file (``KEYFILE.pub`` from keygen); a private key file is accepted too (its public half)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TrustError(f"can't read the key {p}: {exc.strerror}") from None
    if "PRIVATE KEY" in text:
        return load_private_key(p).public_key
    try:
        doc = json.loads(text)
        return SSlibKey.from_dict(doc.pop("keyid"), doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustError(f"{p} is not a public key file made by protoreg keygen ({exc})") from None


# -- ceilings ---------------------------------------------------------------------------------------------------
def parse_ceiling(items: Iterable[str] | str | None) -> tuple[str, ...]:
    """A ceiling: API permissions ("storage"), host match patterns, ``*`` (everything) or nothing.

    ``None`` means everything. A comma-separated string is split."""
    if items is None:
        return (ALL,)
    if isinstance(items, str):
        items = [] if items.strip().lower() in ("", "none") else items.split(",")
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if (item != ALL and "://" in item) or item == "<all_urls>":
            try:
                parse_pattern(item)
            except ValueError:
                raise TrustError(f"the ceiling entry {item!r} is not a match pattern (e.g. https://*.example.org/*)"
                                 ) from None
        out.append(item)
    return tuple(dict.fromkeys(out))


def _is_host(perm: str) -> bool:
    return "://" in perm or perm == "<all_urls>"


def covers(ceiling: Sequence[str], permission: str) -> bool:
    """Does the ceiling allow granting ``permission`` (an API permission or a host match pattern)?"""
    if ALL in ceiling:
        return True
    if not _is_host(permission):
        return permission in ceiling
    try:
        wanted = parse_pattern(permission)
    except ValueError:
        return False
    for item in ceiling:
        if _is_host(item):
            try:
                if parse_pattern(item).covers(wanted):
                    return True
            except ValueError:
                continue
    return False


@dataclass(frozen=True)
class Clipped:
    permission: str
    by: str  # e.g. "store alpha" or "store alpha, role community"

    def __str__(self) -> str:
        return f"{self.permission} (clipped by {self.by})"


def clip(requested: Sequence[str], chain: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[str], list[Clipped]]:
    """``requested ∩ ceiling`` along a chain of (who, ceiling), top store first; returns (kept, clipped).

    Each clipped permission names the first level whose ceiling does not cover it, so a child's ceiling is always
    within its parent's."""
    kept = list(dict.fromkeys(requested))
    clipped: list[Clipped] = []
    for who, ceiling in chain:
        for perm in list(kept):
            if not covers(ceiling, perm):
                kept.remove(perm)
                clipped.append(Clipped(perm, who))
    return kept, clipped


# -- writing a store (the publisher's side) ---------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _md_path(store: Path, role: str) -> Path:
    return store / "metadata" / f"{urllib.parse.quote(role, '')}.json"


def _load(store: Path, role: str) -> Metadata[Any]:
    path = _md_path(store, role)
    if path.is_file():
        return Metadata.from_bytes(path.read_bytes())
    else:
        raise TrustError(f"{store} has no {role} metadata ({path}). Is it a store made by protoreg store init?")


def _write(store: Path, role: str, md: Metadata[Any]) -> None:
    path = _md_path(store, role)
    tmp = path.with_name(path.name + ".tmp")
    md.to_file(str(tmp), _SERIALIZER)
    tmp.replace(path)


def _online_signer(store: Path) -> CryptoSigner:
    return load_private_key(store / "keys" / "online.pem")


def _sign(md: Metadata[Any], signer: CryptoSigner, who: str, role: str, keyids: Sequence[str]) -> None:
    if signer.public_key.keyid not in keyids:
        raise TrustError(f"the key {who} is not a key of the role {role!r} (its key id "
                         f"{signer.public_key.keyid[:12]}… is not among {', '.join(k[:12] for k in keyids)}). "
                         "Sign with the role's key")
    md.signatures.clear()
    md.sign(signer, append=True)


def _role_keyids(store: Path, role: str) -> tuple[list[str], str]:
    """The key ids allowed to sign ``role`` and the role that delegates it."""
    root = _load(store, "root").signed
    if role in ("root", "targets", "snapshot", "timestamp"):
        return list(root.roles[role].keyids), "root"
    parent = _parent_of(store, role)
    delegations = _load(store, parent).signed.delegations
    assert delegations is not None and delegations.roles is not None
    return list(delegations.roles[role].keyids), parent


def _parent_of(store: Path, role: str) -> str:
    for name, md in _all_targets(store):
        d = md.signed.delegations
        if d is not None and d.roles and role in d.roles:
            return name
    raise TrustError(f"the store {store} has no role {role!r}. Delegate it first with protoreg store delegate")


def _all_targets(store: Path) -> Iterator[tuple[str, Metadata[Targets]]]:
    """The top targets role and every delegated role that has metadata, parents first."""
    queue = ["targets"]
    while queue:
        name = queue.pop(0)
        try:
            md = _load(store, name)
        except TrustError:
            continue
        yield name, md
        d = md.signed.delegations
        if d is not None and d.roles:
            queue.extend(d.roles)


def _prefix(store: Path, role: str) -> str:
    if role == "targets":
        return ""
    parent = _parent_of(store, role)
    return f"{_prefix(store, parent)}{role.rsplit('/', 1)[-1]}/"


def target_path(prefix: str, ext_id: str) -> str:
    return f"{prefix}{ext_id}.protoreg"


def _update_snapshot(store: Path, changed: dict[str, int], online_expiry: timedelta) -> None:
    signer = _online_signer(store)
    snap = _load(store, "snapshot")
    for role, version in changed.items():
        snap.signed.meta[f"{role}.json"] = MetaFile(version)
    snap.signed.version += 1
    snap.signed.expires = _now() + online_expiry
    _sign(snap, signer, "online.pem", "snapshot", _role_keyids(store, "snapshot")[0])
    _write(store, "snapshot", snap)
    ts = _load(store, "timestamp")
    ts.signed.snapshot_meta = MetaFile(snap.signed.version)
    ts.signed.version += 1
    ts.signed.expires = _now() + online_expiry
    _sign(ts, signer, "online.pem", "timestamp", _role_keyids(store, "timestamp")[0])
    _write(store, "timestamp", ts)


def init_store(directory: str | os.PathLike[str], key: CryptoSigner, *,
               online_expiry: timedelta = ONLINE_EXPIRY) -> Path:
    """Create a store in ``directory``: root and targets signed by ``key``, snapshot and timestamp by a new
    online key (``keys/online.pem``). Returns the path of the root metadata to give to ``protoreg trust add``."""
    store = Path(directory)
    if (store / "metadata" / "root.json").exists():
        raise TrustError(f"{store} already holds a store (metadata/root.json exists). Use another directory")
    (store / "metadata").mkdir(parents=True, exist_ok=True)
    (store / "targets").mkdir(exist_ok=True)
    (store / "keys").mkdir(mode=0o700, exist_ok=True)
    online = CryptoSigner.generate_ed25519()
    fd = os.open(store / "keys" / "online.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(online.private_bytes)
    now = _now()
    root = Metadata(Root(expires=now + ROOT_EXPIRY, consistent_snapshot=False))
    root.signed.add_key(key.public_key, "root")
    root.signed.add_key(key.public_key, "targets")
    root.signed.add_key(online.public_key, "snapshot")
    root.signed.add_key(online.public_key, "timestamp")
    root.sign(key)
    targets = Metadata(Targets(expires=now + TARGETS_EXPIRY))
    targets.sign(key)
    snap = Metadata(Snapshot(expires=now + online_expiry))
    snap.signed.meta["targets.json"] = MetaFile(1)
    snap.sign(online)
    ts = Metadata(Timestamp(expires=now + online_expiry, snapshot_meta=MetaFile(1)))
    ts.sign(online)
    _write(store, "1.root", root)
    _write(store, "root", root)
    _write(store, "targets", targets)
    _write(store, "snapshot", snap)
    _write(store, "timestamp", ts)
    return _md_path(store, "1.root")


def delegate(directory: str | os.PathLike[str], name: str, child_key: Key, ceiling: Sequence[str],
             signing_key: CryptoSigner, *, parent: str = "targets",
             online_expiry: timedelta = ONLINE_EXPIRY) -> list[Clipped]:
    """Delegate the path prefix ``NAME/`` to a child role signed by ``child_key``, with ``ceiling`` recorded in
    the signed delegation. A ceiling wider than the parent's is clipped (returned). Signed by the parent's key."""
    store = Path(directory)
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise TrustError(f"the role name {name!r} must be letters, digits, '-', '_' or '.' (it becomes a path "
                         "prefix)")
    if name in ("root", "targets", "snapshot", "timestamp"):
        raise TrustError(f"{name!r} is a top-level TUF role name; pick another name")
    if name in dict(_all_targets(store)) or any(
            md.signed.delegations and md.signed.delegations.roles and name in md.signed.delegations.roles
            for _, md in _all_targets(store)):
        raise TrustError(f"the store {store} already delegates a role named {name!r}")
    wanted = parse_ceiling(ceiling)
    parent_ceiling = _ceiling_chain(store, parent)
    kept, clipped = clip([c for c in wanted if c != ALL] if ALL not in wanted else [ALL], parent_ceiling)
    if ALL in wanted and clipped:  # "*" under a bounded parent: the parent's own ceiling
        kept, clipped = list(parent_ceiling[-1][1]), []
    md = _load(store, parent)
    if md.signed.delegations is None:
        md.signed.delegations = Delegations(keys={}, roles={})
    d = md.signed.delegations
    assert d.roles is not None
    d.keys[child_key.keyid] = child_key
    d.roles[name] = DelegatedRole(name=name, keyids=[child_key.keyid], threshold=1, terminating=True,
                                  paths=_paths(f"{_prefix(store, parent)}{name}/"),
                                  unrecognized_fields={CEILING_FIELD: list(kept)})
    md.signed.version += 1
    md.signed.expires = _now() + TARGETS_EXPIRY
    _sign(md, signing_key, "--signing-key", parent, _role_keyids(store, parent)[0])
    _write(store, parent, md)
    # The child's own (empty) role metadata is made at its first publish, signed with its key.
    _update_snapshot(store, {parent: md.signed.version}, online_expiry)
    return clipped


#: Delegation depth below a role: TUF path patterns match one path segment per "*", so a role's patterns list
#: each depth of its prefix (a grandchild's targets are two segments below the child's prefix).
MAX_DEPTH: Final = 4


def _paths(prefix: str) -> list[str]:
    return [prefix + "/".join(["*"] * depth) for depth in range(1, MAX_DEPTH + 1)]


def _ceiling_chain(store: Path, role: str) -> list[tuple[str, tuple[str, ...]]]:
    """(role, ceiling) from the top role down to ``role`` as recorded in the store's own metadata."""
    if role == "targets":
        return [("targets", (ALL,))]
    parent = _parent_of(store, role)
    d = _load(store, parent).signed.delegations
    assert d is not None and d.roles is not None
    ceiling = tuple(d.roles[role].unrecognized_fields.get(CEILING_FIELD, ()))
    return [*_ceiling_chain(store, parent), (role, ceiling)]


def publish(directory: str | os.PathLike[str], bundle: bytes, key: CryptoSigner, *, role: str = "targets",
            online_expiry: timedelta = ONLINE_EXPIRY, targets_expiry: timedelta = TARGETS_EXPIRY) -> str:
    """Add (or replace) an extension's bundle as a target of ``role``, signed with ``key``; returns its path."""
    store = Path(directory)
    parsed = bundles.parse(bundle, source="the bundle to publish")
    from protoreg.manifest import Manifest

    manifest = Manifest.model_validate(json.loads(parsed.manifest_bytes), context={"cross_checked": True})
    keyids, _parent = _role_keyids(store, role)
    path = target_path(_prefix(store, role), parsed.id)
    try:
        md = _load(store, role)
    except TrustError:
        if role == "targets":
            raise
        md = Metadata(Targets(expires=_now() + targets_expiry))
        md.signed.version = 0  # the first publish makes it version 1
    requested = sorted({*manifest.permissions, *manifest.host_permissions,  # and each named sandbox's
                        *(p for sb in (getattr(manifest, "sandboxes", None) or {}).values() for p in sb.requested)})
    info = TargetFile.from_data(path, bundle, ["sha256"])
    info.unrecognized_fields["custom"] = {"protoreg": {"id": parsed.id, "version": parsed.version,
                                                       "permissions": requested}}
    md.signed.targets[path] = info
    revoked = md.signed.unrecognized_fields.get(REVOKED_FIELD)
    if revoked and parsed.id in revoked:
        revoked.remove(parsed.id)
    md.signed.version += 1
    md.signed.expires = _now() + targets_expiry
    _sign(md, key, "--key", role, keyids)
    out = store / "targets" / path
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(bundle)
    tmp.replace(out)
    _write(store, role, md)
    _update_snapshot(store, {role: md.signed.version}, online_expiry)
    return path


def revoke(directory: str | os.PathLike[str], ext_id: str, key: CryptoSigner, *,
           online_expiry: timedelta = ONLINE_EXPIRY) -> str:
    """Drop an extension's target from the role that signs it and record the revocation; returns the role."""
    store = Path(directory)
    for role, md in list(_all_targets(store)):
        path = target_path(_prefix(store, role), ext_id)
        if path in md.signed.targets:
            keyids, _ = _role_keyids(store, role)
            del md.signed.targets[path]
            md.signed.unrecognized_fields.setdefault(REVOKED_FIELD, []).append(ext_id)
            md.signed.version += 1
            _sign(md, key, "--key", role, keyids)
            _write(store, role, md)
            _update_snapshot(store, {role: md.signed.version}, online_expiry)
            (store / "targets" / path).unlink(missing_ok=True)
            return role
    raise TrustError(f"the store {store} publishes no extension {ext_id!r}, so there is nothing to revoke")


def resign_online(directory: str | os.PathLike[str], *, online_expiry: timedelta = ONLINE_EXPIRY) -> None:
    """Re-sign snapshot and timestamp with a fresh expiry (run it more often than ONLINE_EXPIRY)."""
    _update_snapshot(Path(directory), {}, online_expiry)


# -- trusting a store (the user's side) -------------------------------------------------------------------------
class _Fetcher(FetcherInterface):
    """file:// URLs read from a directory; http(s) through python-tuf's default fetcher."""

    def __init__(self) -> None:
        self._http: FetcherInterface | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "file":
            return self._file(urllib.request.url2pathname(parsed.path))
        if self._http is None:
            from tuf.ngclient import Urllib3Fetcher

            self._http = Urllib3Fetcher()
        return self._http._fetch(url)

    @staticmethod
    def _file(path: str) -> Iterator[bytes]:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise tuf_errors.DownloadHTTPError(f"{path} not found", 404) from None
        except OSError as exc:
            raise tuf_errors.DownloadError(f"can't read {path}: {exc.strerror}") from None

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(1 << 16):
                    yield chunk

        return chunks()


def store_url(location: str) -> str:
    """A store's base URL: http(s) as given, a directory as a file:// URL."""
    if location.startswith(("http://", "https://", "file://")):
        return location.rstrip("/") + "/"
    path = Path(location).expanduser().resolve()
    if not (path / "metadata").is_dir():
        raise TrustError(f"{location} is not a store directory (it has no metadata/ directory). Pass the "
                         "directory given to protoreg store init, or the store's http(s) URL")
    return path.as_uri().rstrip("/") + "/"


@dataclass(frozen=True)
class TrustedStore:
    name: str
    url: str
    ceiling: tuple[str, ...] = (ALL,)

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "ceiling": list(self.ceiling)}


@dataclass
class Found:
    """An extension target found in a store: where, its signed info, and the ceilings of the chain."""

    store: str
    role: str
    path: str
    info: TargetFile
    chain: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def custom(self) -> dict[str, Any]:
        c = self.info.custom
        return c.get("protoreg", {}) if isinstance(c, dict) else {}


def _explain(store: str, exc: Exception) -> TrustError:
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        hint = ("its metadata expired, so it could be a frozen (replayed) copy. Ask the store's operator to "
                "re-sign it (protoreg store resign); nothing was installed or updated")
        kind = "expired metadata"
    elif isinstance(exc, tuf_errors.BadVersionNumberError):
        hint = ("the store offered metadata older than what this profile already trusts: a rollback. Refused; "
                "if the store was rebuilt on purpose, remove it (protoreg trust remove) and trust it again")
        kind = "rollback"
    elif isinstance(exc, tuf_errors.UnsignedMetadataError):
        hint = ("it is not signed by the key(s) this profile trusts for that role. Refused; check that the store "
                "was not tampered with, or that its root was rotated properly")
        kind = "untrusted signature"
    elif isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        hint = "the file does not match its signed length or hash (tampered or damaged). Refused"
        kind = "hash mismatch"
    elif isinstance(exc, tuf_errors.DownloadError):
        hint = "check the store's URL or directory and the network"
        kind = "download failed"
    else:
        hint = "the store's metadata is inconsistent. Refused"
        kind = "invalid metadata"
    m = re.search(r"\b(root|timestamp|snapshot|targets)\b|[Rr]ole '?([\w.-]+)", msg)
    role = f" (role {m.group(1) or m.group(2)})" if m else ""
    return TrustError(f"store {store!r}{role}: {kind}: {msg}: {hint}")


class StoreClient:
    """One trusted store, its local TUF metadata (``cache_dir``), and verified lookups and downloads."""

    def __init__(self, store: TrustedStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._fetcher = _Fetcher()
        self._updater: Updater | None = None

    @classmethod
    def bootstrap(cls, store: TrustedStore, cache_dir: Path, root: bytes) -> StoreClient:
        """Pin ``root`` (the store's root metadata, given out of band) and check the store answers."""
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / "pinned-root.json").write_bytes(root)
        client = cls(store, cache_dir)
        try:
            client._updater = client._make(bootstrap=root)
        except (tuf_errors.RepositoryError, ValueError) as exc:
            raise TrustError(f"store {store.name!r}: the root metadata given is not valid TUF root metadata "
                             f"({exc}). Pass the root.json printed by protoreg store init") from None
        client.refresh()
        return client

    def _make(self, bootstrap: bytes | None) -> Updater:
        return Updater(str(self.cache_dir), self.store.url + "metadata/", None, self.store.url + "targets/",
                       self._fetcher, bootstrap=bootstrap)

    def refresh(self) -> None:
        """Fetch and verify the store's top-level metadata (TUF client workflow)."""
        try:
            self._updater = self._make(bootstrap=None)
            self._updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            self._updater = None
            raise _explain(self.store.name, exc) from None
        except OSError as exc:
            self._updater = None
            raise TrustError(f"store {self.store.name!r}: can't read its local metadata in {self.cache_dir} "
                             f"({exc}). Remove and trust the store again") from None

    @property
    def updater(self) -> Updater:
        if self._updater is None:
            self.refresh()
        assert self._updater is not None
        return self._updater

    def _local(self, role: str) -> Metadata[Targets] | None:
        path = self.cache_dir / f"{urllib.parse.quote(role, '')}.json"
        try:
            return Metadata[Targets].from_bytes(path.read_bytes())
        except Exception:  # absent or unreadable: treated as not loaded
            return None

    def _snapshot_roles(self) -> set[str]:
        try:
            snap = Metadata[Snapshot].from_bytes((self.cache_dir / "snapshot.json").read_bytes())
        except Exception:
            return set()
        return set(snap.signed.meta)

    def roles(self) -> list[tuple[str, str, list[tuple[str, tuple[str, ...]]]]]:
        """(role, path prefix, ceiling chain) for the top role and every delegated role, parents first, as
        verified by the last refresh/lookup."""
        top = f"store {self.store.name}"
        out = [("targets", "", [(top, self.store.ceiling)])]
        i = 0
        while i < len(out):
            role, prefix, chain = out[i]
            i += 1
            md = self._local(role)
            if md is None or md.signed.delegations is None or not md.signed.delegations.roles:
                continue
            for name, d in md.signed.delegations.roles.items():
                if f"{name}.json" not in self._snapshot_roles():
                    continue  # delegated, but the child has published nothing yet
                ceiling = tuple(str(c) for c in d.unrecognized_fields.get(CEILING_FIELD, ()))
                out.append((name, f"{prefix}{name}/", [*chain, (f"store {self.store.name}, role {name}", ceiling)]))
                # make sure the delegated role's metadata is loaded (verified) for nested delegations
                try:
                    self.updater.get_targetinfo(f"{prefix}{name}/\0probe")
                except (tuf_errors.RepositoryError, tuf_errors.DownloadError):
                    pass
        return out

    def find(self, ext_id: str) -> Found | None:
        """The extension's signed target in this store (the top role first), or None."""
        updater = self.updater
        for role, prefix, chain in self.roles():
            path = target_path(prefix, ext_id)
            try:
                info = updater.get_targetinfo(path)
            except tuf_errors.DownloadError:
                continue  # a delegated role that has published nothing yet
            except tuf_errors.RepositoryError as exc:
                raise _explain(self.store.name, exc) from None
            if info is not None:
                return Found(self.store.name, role, path, info, chain)
        return None

    def revoked(self, ext_id: str) -> str | None:
        """The role that lists ``ext_id`` as revoked (signed), or None."""
        for role, _prefix, _chain in self.roles():
            md = self._local(role)
            if md is not None and ext_id in (md.signed.unrecognized_fields.get(REVOKED_FIELD) or ()):
                return role
        return None

    def download(self, found: Found) -> bytes:
        """The target's bytes, in memory, verified against its signed length and sha256."""
        url = self.store.url + "targets/" + urllib.parse.quote(found.path)
        try:
            data = b"".join(self._fetcher.fetch(url))
            if len(data) > found.info.length:
                raise tuf_errors.LengthOrHashMismatchError(f"{found.path} is longer than its signed length")
            found.info.verify_length_and_hashes(data)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise _explain(self.store.name, exc) from None
        return data
