"""``Profile``: one directory holding what an embedding app and every CLI command share.

::

    <profile>/
      stores.json            trusted stores: URL and ceiling (what each may grant)
      stores/<name>/         the store's TUF client metadata; pinned-root.json is the root given to `trust add`
      installed.json         installed extensions: version, store, role, signed sha256, grants, status, pending
      extensions/<sha256>/   verified bundles (index.json + files/), content-addressed by the signed sha256
      storage.sqlite3        runtime.storage        } the layout of WorkerConfig(state_dir=...): a profile
      data/ext-<id>/         extension data dirs    } *is* a state dir
      audit.log              trust decisions (JSON lines)
      decisions.json         the user's permission decisions (protoreg.permissions)
      audit.sqlite3          capability calls, allowed and denied with the reason (protoreg.audit)

Build the runtime from it::

    profile = protoreg.Profile()                 # $XDG_DATA_HOME/protoreg or ~/.local/share/protoreg
    reg = profile.registry()                     # every installed bundle re-verified before any code runs
    async with profile.session(reg) as session:  # = protoreg.Session(reg, profile=profile)
        ...
    profile.update()                             # refresh stores: revocations, updates (see docs/trust.md)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protoreg import bundles, stores
from protoreg.errors import InstallError, ProtoregError, TrustError
from protoreg.manifest import Manifest, parse_manifest
from protoreg.registry import Registry, verified_extension

if TYPE_CHECKING:
    from protoreg.session import Session

__all__ = ["InstallReport", "Profile", "UpdateReport", "default_profile_dir"]

log = logging.getLogger("protoreg.profile")

UNSIGNED = "unsigned, development"


def default_profile_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "protoreg"


def _requested(manifest: Manifest) -> list[str]:
    """Everything the bundle requests: its own permissions and those of each named sandbox (protoreg/sandboxes.py),
    so a store's ceiling clips both; each sandbox then gets its own requests within the effective grants."""
    sandboxes = (getattr(manifest, "sandboxes", None) or {}).values()
    return list(dict.fromkeys([*manifest.permissions, *manifest.host_permissions,
                               *(p for sb in sandboxes for p in sb.requested)]))


def _is_host(perm: str) -> bool:
    return "://" in perm or perm == "<all_urls>"


def _version_key(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


@dataclass
class InstallReport:
    id: str
    version: str
    source: str                          # "store NAME" or "unsigned, development"
    granted: list[str]
    clipped: list[stores.Clipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"installed {self.id} {self.version} from {self.source}",
               f"  granted: {', '.join(self.granted) or 'nothing'}"]
        out += [f"  clipped: {c.permission} (not within the ceiling of {c.by})" for c in self.clipped]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


@dataclass
class UpdateReport:
    updated: list[str] = field(default_factory=list)        # "id old -> new"
    pending: list[str] = field(default_factory=list)        # "id new: asks for PERM, PERM"
    revoked: list[str] = field(default_factory=list)        # "id: revoked by store NAME"
    refused: list[str] = field(default_factory=list)        # rollbacks, bad bundles
    errors: list[str] = field(default_factory=list)         # stores that could not be refreshed

    def lines(self) -> list[str]:
        out = [f"updated {u}" for u in self.updated] + [f"waiting for your decision: {p}" for p in self.pending]
        out += [f"REVOKED {r}" for r in self.revoked] + [f"refused {r}" for r in self.refused]
        out += [f"error {e}" for e in self.errors]
        return out or ["everything is up to date"]


class Profile:
    """A persistent profile directory (see the module docstring). Safe to share between processes: every change
    takes an exclusive lock on ``<profile>/.lock``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_profile_dir()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # storage and grants are the user's alone
        #: Installed extensions refused at the last load (id -> why), e.g. a file changed on disk.
        self.problems: dict[str, str] = {}
        self._registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self._clients: dict[str, stores.StoreClient] = {}

    def __repr__(self) -> str:
        return f"<Profile {self.path}>"

    # -- state files ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.path / name).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TrustError(f"the profile file {self.path / name} can't be read ({exc}). Restore it from a "
                             "backup or remove it (its extensions must then be installed again)") from None
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path / name)

    def audit(self, event: str, **fields: Any) -> None:
        """Append a trust decision to ``audit.log``."""
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, sort_keys=True)
        with open(self.path / "audit.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    @property
    def installed(self) -> dict[str, dict[str, Any]]:
        """Extension id -> its record (version, source, grants, status, pending update)."""
        return self._read("installed.json")

    @property
    def stores(self) -> dict[str, stores.TrustedStore]:
        return {name: stores.TrustedStore(name, rec["url"], tuple(rec.get("ceiling", [stores.ALL])))
                for name, rec in self._read("stores.json").items()}

    # -- stores -----------------------------------------------------------------------------------------------
    def trust(self, name: str, location: str, root: bytes | str | os.PathLike[str], *,
              ceiling: Sequence[str] | str | None = None) -> stores.TrustedStore:
        """Trust a store: pin its root metadata (given out of band) and set the ceiling of what it may grant
        (default: everything). Fetches and verifies its metadata once."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise TrustError(f"the store name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        root_bytes = root if isinstance(root, bytes) else Path(root).read_bytes()
        store = stores.TrustedStore(name, stores.store_url(location), stores.parse_ceiling(ceiling))
        with self._locked():
            known = self._read("stores.json")
            if name in known:
                raise TrustError(f"a store named {name!r} is already trusted ({known[name]['url']}). Remove it "
                                 f"first (protoreg trust remove {name}) or pick another name")
            cache = self.path / "stores" / name
            shutil.rmtree(cache, ignore_errors=True)
            try:
                self._clients[name] = stores.StoreClient.bootstrap(store, cache, root_bytes)
            except BaseException:
                shutil.rmtree(cache, ignore_errors=True)
                raise
            known[name] = store.to_json()
            self._write("stores.json", known)
            self.audit("trust", store=name, url=store.url, ceiling=list(store.ceiling))
        return store

    def untrust(self, name: str) -> None:
        with self._locked():
            known = self._read("stores.json")
            if known.pop(name, None) is None:
                raise TrustError(f"no store named {name!r} is trusted (trusted: {', '.join(known) or 'none'})")
            self._write("stores.json", known)
            shutil.rmtree(self.path / "stores" / name, ignore_errors=True)
            self._clients.pop(name, None)
            self.audit("untrust", store=name)

    def _client(self, name: str, *, refresh: bool = True) -> stores.StoreClient:
        store = self.stores.get(name)
        if store is None:
            raise TrustError(f"no store named {name!r} is trusted (trusted: {', '.join(self.stores) or 'none'}). "
                             "Add it with protoreg trust add NAME URL_OR_DIR --root ROOT_JSON")
        client = stores.StoreClient(store, self.path / "stores" / name)
        if refresh:
            client.refresh()
        self._clients[name] = client
        return client

    # -- install ----------------------------------------------------------------------------------------------
    def _fetch_verified(self, client: stores.StoreClient, found: stores.Found,
                        ext_id: str) -> tuple[bundles.Bundle, Manifest, list[str], list[stores.Clipped]]:
        """Download a found target, verify it (TUF hash, bundle index, id and version bindings), write its tree,
        validate its manifest, and compute the effective grants."""
        where = f"{ext_id} from store {found.store!r} (role {found.role})"
        custom = found.custom
        if custom.get("id") != ext_id:
            raise TrustError(f"{where}: the signed target {found.path} names the extension {custom.get('id')!r}, "
                             f"not {ext_id!r}. Refused: a signature for one id never validates another")
        data = client.download(found)
        bundle = bundles.parse(data, source=where)
        if bundle.id != ext_id or bundle.version != custom.get("version"):
            raise TrustError(f"{where}: the bundle says {bundle.id} {bundle.version} but the store signed "
                             f"{custom.get('id')} {custom.get('version')}. Refused")
        tree = self._store_tree(bundle)
        manifest = parse_manifest(bundle.manifest_bytes, tree / "files", source=f"{where}: manifest.json")
        if manifest.id != ext_id or manifest.version != bundle.version:
            raise TrustError(f"{where}: its manifest says {manifest.id} {manifest.version}, the signed bundle "
                             f"{bundle.id} {bundle.version}. Refused")
        requested = _requested(manifest)
        if sorted(requested) != sorted(custom.get("permissions", [])):
            raise TrustError(f"{where}: the manifest requests {', '.join(requested) or 'nothing'} but the store "
                             f"signed {', '.join(custom.get('permissions', [])) or 'nothing'}. Refused")
        granted, clipped = stores.clip(requested, found.chain)
        return bundle, manifest, granted, clipped

    def _store_tree(self, bundle: bundles.Bundle) -> Path:
        tree = self.path / "extensions" / bundle.sha256
        if not tree.exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            bundles.write_tree(bundle, tree)
        else:  # already there (same signed sha256): keep it if intact, else replace it with the verified bytes
            try:
                bundles.verify_tree(tree, bundle.sha256, source=f"{bundle.id} in {self.path}")
            except TrustError as exc:
                log.warning("replacing a damaged copy: %s", exc)
                shutil.rmtree(tree)
                bundles.write_tree(bundle, tree)
        return tree

    def _find(self, ext_id: str, store: str | None) -> tuple[stores.StoreClient, stores.Found]:
        names = [store] if store is not None else list(self.stores)
        if not names:
            raise TrustError("no store is trusted yet. Add one with protoreg trust add NAME URL_OR_DIR --root "
                             "ROOT_JSON, or install a development directory with --unsigned")
        errors: list[str] = []
        for name in names:
            try:
                client = self._client(name)
                found = client.find(ext_id)
            except TrustError as exc:
                if store is not None:
                    raise
                errors.append(str(exc))
                continue
            if found is not None:
                return client, found
        if len(names) == 1 and errors:
            raise TrustError(errors[0])
        more = f" ({'; '.join(errors)})" if errors else ""
        raise TrustError(f"no trusted store ({', '.join(names)}) publishes {ext_id!r}{more}")

    def install(self, ext_id: str, *, store: str | None = None) -> InstallReport:
        """Install a signed extension from a trusted store (``store``, or the first one that publishes it)."""
        with self._locked():
            records = self.installed
            if ext_id in records:
                rec = records[ext_id]
                raise InstallError(f"{ext_id} {rec['version']} is already installed ({rec['source']}). Run "
                                   "protoreg update for a newer version, or uninstall it first")
            client, found = self._find(ext_id, store)
            bundle, manifest, granted, clipped = self._fetch_verified(client, found, ext_id)
            records[ext_id] = self._record(bundle, manifest, granted, clipped, found)
            self._write("installed.json", records)
            self.audit("install", id=ext_id, version=bundle.version, store=found.store, role=found.role,
                       sha256=bundle.sha256, granted=granted, clipped=[str(c) for c in clipped])
        self._apply_install(ext_id)
        return InstallReport(ext_id, bundle.version, f"store {found.store}" + (
            f" (role {found.role})" if found.role != "targets" else ""), granted, clipped)

    @staticmethod
    def _record(bundle: bundles.Bundle, manifest: Manifest, granted: list[str], clipped: list[stores.Clipped],
                found: stores.Found | None) -> dict[str, Any]:
        return {"version": bundle.version, "sha256": bundle.sha256, "length": bundle.length,
                "signed": found is not None, "store": found.store if found else None,
                "role": found.role if found else None, "target": found.path if found else None,
                "source": f"store {found.store}" if found else UNSIGNED,
                "requested": _requested(manifest), "granted": granted,
                "clipped": [{"permission": c.permission, "by": c.by} for c in clipped],
                "status": "active", "reason": None, "pending": None, "installed_at": round(time.time(), 3)}

    def install_unsigned(self, directory: str | os.PathLike[str], *, accept_risk: bool = False) -> InstallReport:
        """Install a development directory (or a bundle file from ``protoreg pack``), unsigned. With any
        permission, ``accept_risk=True`` is required (the CLI's ``--i-accept-the-risk``); the refusal names each
        permission."""
        data = Path(directory).read_bytes() if Path(directory).is_file() else bundles.pack(directory)
        bundle = bundles.parse(data, source=str(directory))
        with self._locked():
            records = self.installed
            old = records.get(bundle.id)
            if old is not None and old.get("signed"):
                raise TrustError(f"{bundle.id} is installed signed by store {old['store']}: an unsigned update to "
                                 "a signed extension is refused. Publish the new version to the store, or "
                                 f"uninstall {bundle.id} first")
            tree = self._store_tree(bundle)
            manifest = parse_manifest(bundle.manifest_bytes, tree / "files", source=f"{directory}/manifest.json")
            requested = _requested(manifest)
            warnings = []
            if requested:
                warning = (f"{bundle.id} is unsigned (nobody vouches for its code) and asks for: "
                           + ", ".join(requested) + ". Each of these would be granted in full")
                if not accept_risk:
                    raise TrustError(f"{warning}. Refused without a second confirmation: rerun with "
                                     "--i-accept-the-risk (API: accept_risk=True) if you trust this directory")
                warnings.append(warning)
            records[bundle.id] = self._record(bundle, manifest, requested, [], None)
            self._write("installed.json", records)
            self.audit("install-unsigned", id=bundle.id, version=bundle.version, sha256=bundle.sha256,
                       directory=str(Path(directory).resolve()), granted=requested)
        self._apply_install(bundle.id)
        self._gc()
        return InstallReport(bundle.id, bundle.version, UNSIGNED, requested, [], warnings)

    def uninstall(self, ext_id: str) -> None:
        """Remove the extension, its storage partitions and its data directory."""
        with self._locked():
            records = self.installed
            sandboxes: list[str] = []
            if ext_id in records:  # its named sandboxes (protoreg/sandboxes.py) have storage, data and decisions too
                try:
                    sandboxes = sorted(self.verify(ext_id, records[ext_id])[1].sandboxes)
                except Exception:  # noqa: S110 - a broken bundle is still uninstalled
                    pass
            if records.pop(ext_id, None) is None:
                raise InstallError(f"{ext_id} is not installed in {self.path} (installed: "
                                   f"{', '.join(records) or 'none'})")
            self._write("installed.json", records)
            self.audit("uninstall", id=ext_id)
        from protoreg.permissions import PermissionManager

        grantees = [ext_id, *(f"{ext_id}#{name}" for name in sandboxes)]
        for grantee in grantees:
            PermissionManager(self.path).forget(grantee)  # its decisions go with it
        for reg in list(self._registries):
            if ext_id in reg.extensions:
                reg.uninstall(ext_id)  # a Session on it forgets storage and data
        from protoreg.storage import StorageStore

        storage = StorageStore(self.path / "storage.sqlite3")
        try:
            for grantee in grantees:
                storage.delete_extension(grantee)
        finally:
            storage.close()
        from protoreg.broker import _dir_name

        for grantee in grantees:
            shutil.rmtree(self.path / "data" / _dir_name(grantee), ignore_errors=True)
        self._gc()

    def decisions(self) -> Any:
        """The profile's permission decisions (:class:`protoreg.permissions.PermissionManager`, no prompts): use
        ``decision``/``decide``/``revoke`` with an Extension or ``Grantee.from_record(id, profile.grants(id))``."""
        from protoreg.permissions import PermissionManager

        return PermissionManager(self.path)

    def data_dir(self, ext_id: str) -> Path:
        """``<profile>/data/ext-<id>``: the same path the broker gives the extension's worker."""
        return self.path / "data" / ("ext-" + "".join(c if c.isalnum() or c in "-_.@" else "_" for c in ext_id))

    def _gc(self) -> None:
        """Remove bundle trees no record refers to."""
        keep = {r["sha256"] for r in self.installed.values()}
        keep |= {r["pending"]["sha256"] for r in self.installed.values() if r.get("pending")}
        for tree in (self.path / "extensions").glob("*"):
            if tree.name not in keep:
                shutil.rmtree(tree, ignore_errors=True)

    def grants(self, ext_id: str) -> dict[str, Any]:
        """The extension's record: requested, granted (effective) and clipped (with the store that clipped)."""
        rec = self.installed.get(ext_id)
        if rec is None:
            raise InstallError(f"{ext_id} is not installed in {self.path}")
        return rec

    # -- loading ----------------------------------------------------------------------------------------------
    def verify(self, ext_id: str, rec: dict[str, Any] | None = None, *,
               sha256: str | None = None) -> tuple[bundles.Bundle, Manifest, Path]:
        """Re-verify an installed bundle against its recorded signed sha256; returns the verified bytes."""
        rec = rec or self.grants(ext_id)
        digest = sha256 or rec["sha256"]
        tree = self.path / "extensions" / digest
        source = f"{ext_id} in profile {self.path}"
        bundle = bundles.verify_tree(tree, digest, source=source)
        if bundle.id != ext_id:
            raise TrustError(f"{source}: the installed bundle is {bundle.id}, not {ext_id}. Refused")
        manifest = parse_manifest(bundle.manifest_bytes, tree / "files", source=f"{source}: manifest.json")
        return bundle, manifest, tree

    def _extension(self, ext_id: str, rec: dict[str, Any], *, sha256: str | None = None,
                   granted: Sequence[str] | None = None) -> Any:
        bundle, manifest, tree = self.verify(ext_id, rec, sha256=sha256)
        granted = rec["granted"] if granted is None else granted
        return verified_extension(tree / "files", manifest, bundle.files,
                                  granted_permissions=frozenset(p for p in granted if not _is_host(p)),
                                  granted_hosts=[p for p in granted if _is_host(p)],
                                  provenance=rec["source"] if rec.get("signed") else UNSIGNED)

    def registry(self) -> Registry:
        """A Registry of every installed extension, each re-verified first: a bundle whose files changed on disk
        is refused (see ``problems``), never executed. Revoked extensions are installed disabled (their URLs
        answer 403 "revoked by <store>"). The registry follows later changes made through this Profile."""
        reg = Registry()
        self.problems = {}
        records = self.installed
        for ext_id, rec in sorted(records.items(), key=lambda kv: kv[1].get("installed_at", 0)):
            try:
                ext = self._extension(ext_id, rec)
            except ProtoregError as exc:
                self.problems[ext_id] = str(exc)
                log.error("%s", exc)
                continue
            reg._install(ext, False)
            if rec.get("status") == "revoked":
                reg.disable(ext_id, rec.get("reason") or "revoked")
        self._registries.add(reg)
        return reg

    def session(self, registry: Registry | None = None, **options: Any) -> Session:
        """A Session on ``registry`` (default: :meth:`registry`) whose storage and data dirs live in the profile."""
        from protoreg.session import Session

        return Session(registry if registry is not None else self.registry(), profile=self, **options)

    def _apply_install(self, ext_id: str) -> None:
        rec = self.installed[ext_id]
        for reg in list(self._registries):
            ext = self._extension(ext_id, rec)
            if ext_id in reg.extensions:
                reg.replace(ext)
            else:
                reg._install(ext, False)

    # -- updates and revocation -------------------------------------------------------------------------------
    def update(self) -> UpdateReport:
        """Refresh every trusted store; disable what a store revoked or dropped; install newer versions that ask
        for no new permission; keep the others pending (``approve``/``deny``); refuse rollbacks.

        Registries built by this profile follow at once: a revoked extension's workers stop. Call it in the
        thread of the event loop that runs their Sessions, or use :meth:`update_async` from that loop."""
        report = self._refresh_stores()
        self._apply_update(report)
        return report

    async def update_async(self) -> UpdateReport:
        """:meth:`update` with the network and disk work in a thread, applied to live registries in this loop."""
        import asyncio

        report = await asyncio.to_thread(self._refresh_stores)
        self._apply_update(report)
        return report

    def _refresh_stores(self) -> UpdateReport:
        report = UpdateReport()
        with self._locked():
            records = self.installed
            clients: dict[str, stores.StoreClient | None] = {}
            for name in self.stores:
                try:
                    clients[name] = self._client(name)
                except TrustError as exc:
                    clients[name] = None
                    report.errors.append(str(exc))
            for ext_id, rec in records.items():
                if not rec.get("signed") or rec.get("status") == "revoked":
                    continue
                client = clients.get(rec["store"])
                if client is None:
                    if rec["store"] not in clients:
                        self._revoke(rec, ext_id, f"its store {rec['store']} is no longer trusted", report)
                    continue
                try:
                    self._update_one(client, ext_id, rec, report)
                except TrustError as exc:
                    report.refused.append(f"{ext_id}: {exc}")
            self._write("installed.json", records)
        return report

    def _apply_update(self, report: UpdateReport) -> None:
        records = self.installed
        for ext_id, rec in records.items():
            if rec.get("status") == "revoked":
                for reg in list(self._registries):
                    if ext_id in reg.extensions and ext_id not in reg.disabled:
                        reg.disable(ext_id, rec["reason"])
        for line in report.updated:
            self._apply_install(line.split(" ", 1)[0])
        self._gc()

    def _revoke(self, rec: dict[str, Any], ext_id: str, reason: str, report: UpdateReport) -> None:
        rec["status"], rec["reason"], rec["pending"] = "revoked", reason, None
        report.revoked.append(f"{ext_id}: {reason}")
        self.audit("revoked", id=ext_id, reason=reason)

    def _update_one(self, client: stores.StoreClient, ext_id: str, rec: dict[str, Any],
                    report: UpdateReport) -> None:
        found = client.find(ext_id)
        if found is None:
            role = client.revoked(ext_id)
            how = f"revoked by store {rec['store']}" + (f" (role {role})" if role and role != "targets" else "")
            if role is None:
                how = f"revoked by store {rec['store']} (it no longer publishes {ext_id})"
            self._revoke(rec, ext_id, how, report)
            return
        if found.info.hashes.get("sha256") == rec["sha256"]:
            return
        pending = rec.get("pending")
        if pending and pending["sha256"] == found.info.hashes.get("sha256"):
            report.pending.append(f"{ext_id} {pending['version']} asks for {', '.join(pending['new'])} (approve "
                                  f"with protoreg update --approve {ext_id})")
            return
        new_version = str(found.custom.get("version", ""))
        try:
            newer = _version_key(new_version) > _version_key(rec["version"])
        except ValueError:
            newer = False
        if not newer:
            raise TrustError(f"store {rec['store']!r} offers version {new_version} of {ext_id}, not newer than the "
                             f"installed {rec['version']}: a rollback is refused; {rec['version']} keeps running")
        bundle, manifest, granted, clipped = self._fetch_verified(client, found, ext_id)
        new = [p for p in granted if p not in rec["granted"]]
        fresh = self._record(bundle, manifest, granted, clipped, found)
        fresh["installed_at"] = rec["installed_at"]
        if new:
            rec["pending"] = {**{k: fresh[k] for k in ("version", "sha256", "length", "role", "target", "requested",
                                                       "granted", "clipped")}, "new": new}
            report.pending.append(f"{ext_id} {bundle.version} asks for {', '.join(new)} "
                                  f"(approve with protoreg update --approve {ext_id}; {rec['version']} keeps "
                                  "running meanwhile)")
            self.audit("update-pending", id=ext_id, version=bundle.version, new=new)
            return
        old = rec["version"]
        rec.clear()
        rec.update(fresh)
        report.updated.append(f"{ext_id} {old} -> {bundle.version}")
        self.audit("update", id=ext_id, old=old, version=bundle.version, sha256=bundle.sha256)

    def pending(self) -> dict[str, dict[str, Any]]:
        """Updates waiting for the user's decision: id -> the pending version and the new permissions."""
        return {i: r["pending"] for i, r in self.installed.items() if r.get("pending")}

    def approve(self, ext_id: str) -> InstallReport:
        """Grant what a pending update asks for and install it (re-verified from the profile)."""
        with self._locked():
            records = self.installed
            rec = records.get(ext_id)
            if rec is None or not rec.get("pending"):
                raise InstallError(f"no update of {ext_id} is waiting for a decision")
            pend = rec["pending"]
            self.verify(ext_id, rec, sha256=pend["sha256"])
            rec.update({k: v for k, v in pend.items() if k != "new"})
            rec["pending"] = None
            self._write("installed.json", records)
            self.audit("update-approved", id=ext_id, version=rec["version"], granted=rec["granted"])
        self._apply_install(ext_id)
        self._gc()
        clipped = [stores.Clipped(c["permission"], c["by"]) for c in rec["clipped"]]
        return InstallReport(ext_id, rec["version"], rec["source"], rec["granted"], clipped)

    def deny(self, ext_id: str) -> None:
        """Refuse a pending update: the installed version keeps running (it is offered again by a later one)."""
        with self._locked():
            records = self.installed
            rec = records.get(ext_id)
            if rec is None or not rec.get("pending"):
                raise InstallError(f"no update of {ext_id} is waiting for a decision")
            self.audit("update-denied", id=ext_id, version=rec["pending"]["version"])
            rec["pending"] = None
            self._write("installed.json", records)
        self._gc()
