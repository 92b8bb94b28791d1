"""Live reload for ``protoreg serve -e DIR --reload``: watch extension directories and swap in new code.

Every ``interval`` seconds each directory's files are listed with their mtimes and sizes (no dependency, no
inotify); when that changes, the bundle is read again and its content hashed, and only a real change reloads:
the manifest is re-validated and the code re-read exactly as ``Registry.install`` does, then
``Registry.replace`` swaps the extension in place. Its workers are replaced: the next request starts a worker
with the new code while requests already running finish on the old workers (they drain, see
``WorkerManager``).

A broken edit (manifest errors, an unreadable bundle, a changed extension id) keeps the previous version
registered, prints the problems on the terminal, and the gateway answers the extension's URLs with an error page
naming them, until an edit fixes it. The server never stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protoreg.errors import ManifestError, ProtoregError

__all__ = ["Reloader", "WatchedBundle"]


@dataclass
class WatchedBundle:
    root: Path
    ext_id: str
    stamp: tuple[tuple[str, int, int], ...] = ()
    digest: str = ""
    error: str | None = None
    reloads: int = 0
    schemes: frozenset[str] = field(default_factory=frozenset)


def _stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".protoreg")):
                continue
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = path.stat()
                out.append((path.relative_to(root).as_posix(), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _digest(root: Path) -> str:
    from protoreg.bundles import read_tree

    h = hashlib.sha256()
    for rel, data in sorted(read_tree(root).items()):
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ManifestError):
        return f"{exc.source}: {len(exc.problems)} manifest problem(s):\n" + "\n".join(f"  {p}" for p in exc.problems)
    return str(exc)


class Reloader:
    """Watches the directories of extensions installed in ``registry`` and reloads them on change."""

    def __init__(self, registry: Any, directories: Iterable[str | os.PathLike[str]], *, interval: float = 0.5,
                 report: Callable[[str], None] | None = None) -> None:
        from protoreg.manifest import load_manifest

        self.registry = registry
        self.interval = interval
        self.report = report or (lambda line: None)
        self.bundles: list[WatchedBundle] = []
        for d in directories:
            root = Path(d)
            manifest = load_manifest(root)
            self.bundles.append(WatchedBundle(root, manifest.id, _stamp(root), _digest(root),
                                              schemes=frozenset(h.protocol for h in manifest.protocol_handlers)))
        self._task: asyncio.Task[None] | None = None

    # -- polling ----------------------------------------------------------------------------------------------
    def poll(self) -> list[WatchedBundle]:
        """Check every directory once; returns the bundles that were reloaded or failed to."""
        changed = []
        for bundle in self.bundles:
            stamp = _stamp(bundle.root)
            if stamp == bundle.stamp:
                continue
            bundle.stamp = stamp
            try:
                digest = _digest(bundle.root)
            except (OSError, ProtoregError) as exc:
                self._fail(bundle, str(exc))
                changed.append(bundle)
                continue
            if digest == bundle.digest:
                continue  # touched, not changed
            bundle.digest = digest
            self.reload(bundle)
            changed.append(bundle)
        return changed

    def reload(self, bundle: WatchedBundle) -> None:
        from protoreg.manifest import load_manifest
        from protoreg.registry import read_bundle, verified_extension

        try:
            manifest = load_manifest(bundle.root)
            if manifest.id != bundle.ext_id:
                raise ProtoregError(f"the extension id changed from {bundle.ext_id} to {manifest.id}; live reload "
                                    "keeps one extension. Restore the id, or restart protoreg serve")
            files, _ = read_bundle(bundle.root)
            ext = verified_extension(bundle.root, manifest, files)
            self.registry.replace(ext)
        except (ProtoregError, OSError) as exc:
            self._fail(bundle, _describe(exc))
            return
        bundle.error = None
        bundle.reloads += 1
        bundle.schemes = frozenset(h.protocol for h in manifest.protocol_handlers)
        self.report(f"reloaded {ext.id} {ext.version} from {bundle.root} (code {ext.digest[:12]}): the next request "
                    "runs the new code")

    def _fail(self, bundle: WatchedBundle, message: str) -> None:
        bundle.error = message
        self.report(f"reload of {bundle.root} FAILED, still serving the previous version of {bundle.ext_id}:\n"
                    f"{message}\nFix the file and save: it reloads by itself.")

    def error_for(self, scheme: str | None) -> tuple[str, str] | None:
        """(extension id, problem) when ``scheme`` belongs to a bundle whose last edit failed to load."""
        for bundle in self.bundles:
            if bundle.error is not None and scheme in bundle.schemes:
                return bundle.ext_id, bundle.error
        return None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.poll)

    # -- aiohttp integration ----------------------------------------------------------------------------------
    def install(self, app: Any) -> None:
        """Poll while ``app`` runs, and answer a broken extension's URLs with the error page."""
        from aiohttp import web

        from protoreg.gateway.hosts import parse_host_header
        from protoreg.gateway.pages import error_page

        @web.middleware
        async def broken_edit_page(request: web.Request, handler: Any) -> Any:
            target = parse_host_header(request.headers.get("Host", ""))
            found = self.error_for(target.scheme) if target is not None else None
            if found is None:
                return await handler(request)
            ext_id, problem = found
            return error_page(500, f"The last edit of {ext_id} does not load, so it is not served until it is "
                                   f"fixed (save the file again to retry): {problem}", extension=ext_id,
                              url=str(request.url))

        app.middlewares.append(broken_edit_page)

        async def start(app: Any) -> None:
            self._task = asyncio.ensure_future(self.run())

        async def stop(app: Any) -> None:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
