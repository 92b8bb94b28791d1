"""The Registry: installed extensions, which extension owns each scheme, and the policy queries on top.

Conflict policy (one rule): the first installed extension keeps a scheme; a later one that declares it waits in
line, unless it is installed with ``prefer=True``, which puts it first. Every conflict is recorded in
``reg.conflicts`` and logged as a warning. Uninstalling releases each scheme to the next claimant in line.

Install reads every ``*.py`` file of the bundle once, hashes it, and keeps the bytes: the worker executes those bytes
and nothing else, so a file changed on disk later changes nothing until the extension is reinstalled.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

from yarl import URL

from protoreg.errors import InstallError, UnknownScheme
from protoreg.manifest import Manifest, ProtocolHandler, load_manifest
from protoreg.policy import origins, trust, urls

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "MAX_FILES", "Conflict", "Extension", "Registry", "SchemeEntry", "read_bundle",
           "verified_extension"]

log = logging.getLogger("protoreg.registry")

#: Bundle bounds checked at install: Python files read, their total size, and entries walked.
MAX_FILES: Final = 2000
MAX_BYTES: Final = 64 * 1024 * 1024
MAX_ENTRIES: Final = 20000


@dataclass(frozen=True, eq=False)
class Extension:
    id: str
    name: str
    version: str
    root: Path
    manifest: Manifest
    #: Every ``*.py`` file of the bundle (relative POSIX path -> bytes), read once at install.
    files: Mapping[str, bytes]
    #: sha256 over the sorted ``path\0sha256(bytes)`` lines: the identity of the bundle's code.
    digest: str
    #: The effective grants (``requested ∩ ceiling`` of the signing stores), or None: what the manifest requests
    #: (a directory installed for development). The broker enforces these, never the manifest directly.
    granted_permissions: frozenset[str] | None = None
    granted_hosts: tuple[str, ...] | None = None
    #: Where the code came from: "store NAME" (signed and verified), or "unsigned, development".
    provenance: str = "unsigned, development"

    @property
    def handlers(self) -> tuple[ProtocolHandler, ...]:
        return tuple(self.manifest.protocol_handlers)

    def __repr__(self) -> str:
        return f"<Extension {self.id} {self.version} {self.digest[:12]}>"


@dataclass(frozen=True)
class SchemeEntry:
    scheme: str
    extension: Extension
    handler: ProtocolHandler

    @property
    def trustworthy(self) -> bool:
        return self.handler.uriIsTrustworthy

    def template_url(self, url: str | URL) -> str | None:
        """``uriTemplate`` with ``%s`` replaced by the URL, percent-encoded as encodeURIComponent does."""
        template = self.handler.uriTemplate
        if template is None:
            return None
        return template.replace("%s", quote(str(url), safe="-_.!~*'()"), 1)


@dataclass(frozen=True)
class Conflict:
    scheme: str
    active: str      # the extension id that serves the scheme after the install
    waiting: str     # the extension id that does not
    reason: str

    def __str__(self) -> str:
        return f"scheme {self.scheme!r}: {self.active} serves it, {self.waiting} waits ({self.reason})"


def read_bundle(root: Path) -> tuple[dict[str, bytes], str]:
    """Read every ``*.py`` file of the bundle once; returns (relative POSIX path -> bytes, digest).

    Skips ``__pycache__`` and hidden directories, does not follow symlinked directories, refuses symlinked files
    that point out of the bundle and non-regular files, and bounds the walk (MAX_ENTRIES), the number of Python
    files (MAX_FILES) and their total size (MAX_BYTES).
    """
    files: dict[str, bytes] = {}
    total = entries = 0
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        entries += len(dirnames) + len(filenames)
        if entries > MAX_ENTRIES:
            raise InstallError(f"the bundle {root} has more than {MAX_ENTRIES} files and directories. An extension "
                               "bundle holds its code and assets only: move data out of it")
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not path.resolve().is_relative_to(real_root):
                raise InstallError(f"{rel} in {root} is a symlink pointing outside the extension directory. Copy "
                                   "the file into the bundle instead of linking to it")
            data = _read_regular(path.resolve(), rel, MAX_BYTES - total)
            total += len(data)
            if len(files) >= MAX_FILES:
                raise InstallError(f"the bundle {root} has more than {MAX_FILES} Python files. Remove what the "
                                   "handler doesn't use")
            files[rel] = data
    lines = sorted(f"{p}\0{hashlib.sha256(b).hexdigest()}" for p, b in files.items())
    return files, hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _read_regular(path: Path, rel: str, budget: int) -> bytes:
    """Read a regular file without following a symlink swapped in after the check, within ``budget`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InstallError(f"can't read {rel} of the bundle: {exc.strerror}. Check the file's permissions") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InstallError(f"{rel} is not a regular file. Replace it with a regular Python file")
        data = f.read(budget + 1)
    if len(data) > budget:
        raise InstallError(f"the bundle's Python code is larger than {MAX_BYTES // 2**20} MiB (at {rel}). Remove "
                           "what the handler doesn't use")
    return data


def verified_extension(root: str | os.PathLike[str], manifest: Manifest, files: Mapping[str, bytes], *,
                       granted_permissions: frozenset[str] | None = None, granted_hosts: Sequence[str] | None = None,
                       provenance: str = "unsigned, development") -> Extension:
    """An Extension from verified in-memory bytes (see Registry.install_verified and Registry.replace)."""
    code = {p: b for p, b in sorted(files.items()) if p.endswith(".py")}
    lines = sorted(f"{p}\0{hashlib.sha256(b).hexdigest()}" for p, b in code.items())
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return Extension(manifest.id, manifest.name, manifest.version, Path(root).resolve(), manifest,
                     MappingProxyType(code), digest, granted_permissions,
                     None if granted_hosts is None else tuple(granted_hosts), provenance)


class Registry:
    """Installed extensions and their schemes. An object, never global state."""

    def __init__(self) -> None:
        self._extensions: dict[str, Extension] = {}
        self._claims: dict[str, list[str]] = {}  # scheme -> extension ids in line, the first one active
        self._schemes: dict[str, SchemeEntry] = {}
        self._conflicts: list[Conflict] = []
        self._listeners: list[Callable[[str, Extension], None]] = []
        self._disabled: dict[str, str] = {}
        self._trustworthy: frozenset[str] = frozenset()
        # yarl.URLs are immutable, so resolutions can be shared; the cache is cleared whenever schemes change.
        self._resolve_cached = functools.lru_cache(maxsize=4096)(self._resolve_uncached)
        self._origins: dict[tuple[str, str], origins.Origin] = {}
        self.extensions: Mapping[str, Extension] = MappingProxyType(self._extensions)
        self.schemes: Mapping[str, SchemeEntry] = MappingProxyType(self._schemes)

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        return tuple(self._conflicts)

    # -- install / uninstall ----------------------------------------------------------------------------------
    def install(self, path: str | os.PathLike[str], *, prefer: bool = False) -> Extension:
        """Install the extension in directory ``path``; raises ManifestError (every problem) or InstallError."""
        root = Path(path)
        manifest = load_manifest(root)
        files, digest = read_bundle(root)
        ext = Extension(manifest.id, manifest.name, manifest.version, root.resolve(), manifest,
                        MappingProxyType(files), digest)
        return self._install(ext, prefer)

    def install_verified(self, root: str | os.PathLike[str], manifest: Manifest, files: Mapping[str, bytes], *,
                         granted_permissions: frozenset[str] | None = None,
                         granted_hosts: Sequence[str] | None = None, provenance: str = "unsigned, development",
                         prefer: bool = False) -> Extension:
        """Install from bytes already verified (a signed bundle, see protoreg.profile): nothing is read again.

        ``files`` maps every bundle path to its bytes; the worker gets the ``*.py`` ones. ``root`` is where the
        verified files were written (the sandbox's read-only bundle directory, for assets)."""
        ext = verified_extension(root, manifest, files, granted_permissions=granted_permissions,
                                 granted_hosts=granted_hosts, provenance=provenance)
        return self._install(ext, prefer)

    def _install(self, ext: Extension, prefer: bool) -> Extension:
        manifest, digest = ext.manifest, ext.digest
        existing = self._extensions.get(ext.id)
        if existing is not None:
            if (existing.digest == digest and existing.root == ext.root and existing.manifest == manifest
                    and existing.granted_permissions == ext.granted_permissions
                    and existing.granted_hosts == ext.granted_hosts):
                log.debug("%s is already installed from %s with the same code and manifest", ext.id, ext.root)
                return existing
            raise InstallError(f"an extension with id {ext.id!r} is already installed from {existing.root} "
                               f"(version {existing.version}, code {existing.digest[:12]}); this one differs "
                               f"(version {ext.version}, code {digest[:12]}). Call reg.uninstall({ext.id!r}) "
                               "first to replace it")
        self._claim(ext, prefer)
        self._emit("installed", ext)
        return ext

    def _claim(self, ext: Extension, prefer: bool) -> None:
        self._extensions[ext.id] = ext
        for handler in ext.manifest.protocol_handlers:
            line = self._claims.setdefault(handler.protocol, [])
            if line:
                current = line[0]
                if prefer:
                    line.insert(0, ext.id)
                    conflict = Conflict(handler.protocol, ext.id, current, "installed with prefer=True")
                else:
                    line.append(ext.id)
                    conflict = Conflict(handler.protocol, current, ext.id,
                                        "first installed keeps the scheme; install with prefer=True to take it")
                self._conflicts.append(conflict)
                log.warning("%s", conflict)
            else:
                line.append(ext.id)
            self._refresh(handler.protocol)

    def uninstall(self, extension_id: str) -> Extension:
        ext = self._extensions.get(extension_id)
        if ext is None:
            raise InstallError(f"no extension with id {extension_id!r} is installed (installed: "
                               f"{', '.join(self._extensions) or 'none'})")
        self._release(ext)
        self._disabled.pop(extension_id, None)
        self._emit("uninstalled", ext)
        return ext

    def replace(self, ext: Extension) -> Extension:
        """Swap an installed extension for a new version of it (an update), keeping its place in each scheme's
        line, its storage and its data; subscribers get "updated" with the new Extension (workers of the old
        version stop)."""
        old = self._extensions.get(ext.id)
        if old is None:
            raise InstallError(f"no extension with id {ext.id!r} is installed, so it can't be updated")
        positions = {s: line.index(ext.id) for s, line in self._claims.items() if ext.id in line}
        self._release(old)
        self._extensions[ext.id] = ext
        for handler in ext.manifest.protocol_handlers:
            line = self._claims.setdefault(handler.protocol, [])
            line.insert(min(positions.get(handler.protocol, len(line)), len(line)), ext.id)
            self._refresh(handler.protocol)
        self._emit("updated", ext)
        return ext

    # -- disable (revocation) ---------------------------------------------------------------------------------
    @property
    def disabled(self) -> Mapping[str, str]:
        """Extension id -> why it is disabled (e.g. "revoked by store alpha"). Its schemes stay claimed, so its
        URLs answer 403 with the reason instead of falling through to another handler."""
        return MappingProxyType(self._disabled)

    def disable(self, extension_id: str, reason: str) -> None:
        """Stop serving an extension (revocation): subscribers get "disabled" and stop its workers at once."""
        ext = self._extensions.get(extension_id)
        if ext is None:
            raise InstallError(f"no extension with id {extension_id!r} is installed")
        self._disabled[extension_id] = reason
        self._emit("disabled", ext)

    def _release(self, ext: Extension) -> None:
        extension_id = ext.id
        self._extensions.pop(extension_id, None)
        for handler in ext.manifest.protocol_handlers:
            line = self._claims.get(handler.protocol, [])
            was_active = bool(line) and line[0] == extension_id
            if extension_id in line:
                line.remove(extension_id)
            if not line:
                self._claims.pop(handler.protocol, None)
            elif was_active:
                log.info("scheme %r released by %s to %s, next in line", handler.protocol, extension_id, line[0])
            self._refresh(handler.protocol)

    def _refresh(self, scheme: str) -> None:
        line = self._claims.get(scheme)
        if not line:
            self._schemes.pop(scheme, None)
        else:
            ext = self._extensions[line[0]]
            handler = next(h for h in ext.manifest.protocol_handlers if h.protocol == scheme)
            self._schemes[scheme] = SchemeEntry(scheme, ext, handler)
        self._trustworthy = frozenset(s for s, e in self._schemes.items() if e.trustworthy)
        self._resolve_cached.cache_clear()

    def subscribe(self, callback: Callable[[str, Extension], None]) -> Callable[[], None]:
        """Call ``callback(event, extension)`` on "installed", "uninstalled", "updated" or "disabled"; returns the
        unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, event: str, ext: Extension) -> None:
        # The registry has already changed: a failing listener must not hide that or starve the others.
        for cb in list(self._listeners):
            try:
                cb(event, ext)
            except Exception:
                log.exception("a %r listener (%r) failed for %s", event, cb, ext.id)

    # -- queries ----------------------------------------------------------------------------------------------
    def lookup(self, scheme: str) -> SchemeEntry:
        entry = self._schemes.get(scheme.lower() if isinstance(scheme, str) else scheme)
        if entry is None:
            raise UnknownScheme(str(scheme), sorted(self._schemes))
        return entry

    def resolve(self, url: str | URL, base: str | URL | None = None) -> URL:
        """WHATWG resolution with the installed schemes parsed like https (see protoreg.policy.urls)."""
        return self._resolve_cached(str(url), None if base is None else str(base))

    def _resolve_uncached(self, url: str, base: str | None) -> URL:
        return urls.resolve(url, base, registered=self._schemes)

    def origin(self, url: str | URL) -> origins.Origin:
        if isinstance(url, URL) and url.scheme in self._schemes and url.raw_host:
            # A registered scheme's origin is (scheme, host): the same object for every URL of that origin, so a
            # request that needs it three times (routing, CORS, the response) builds it once.
            key = (url.scheme, url.raw_host)
            found = self._origins.get(key)
            if found is None:
                if len(self._origins) >= 4096:
                    self._origins.clear()
                found = self._origins[key] = origins.Origin.tuple(*key)
            return found
        return origins.origin_of(url if isinstance(url, URL) else str(url), registered=self._schemes)

    def is_potentially_trustworthy(self, target: origins.Origin | str | URL) -> bool:
        return trust.is_potentially_trustworthy(target, registered=self._schemes,
                                                trustworthy_schemes=self._trustworthy)

    def is_secure_context(self, chain: Sequence[origins.Origin | str | URL]) -> bool:
        return trust.is_secure_context(chain, registered=self._schemes, trustworthy_schemes=self._trustworthy)
