"""All worker pools of a host: which extension runs where, warm spares, idle reaping, shutdown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protoreg._text import printable
from protoreg.errors import DataDirFull, HandlerError, WorkerCrashed
from protoreg.worker.bootstrap import encode_init
from protoreg.worker.config import WorkerConfig
from protoreg.worker.pool import ExtensionPool
from protoreg.worker.process import FILE_READ_THREADS, WorkerProcess, WorkerStream

if TYPE_CHECKING:
    from protoreg.registry import Extension, Registry

__all__ = ["WorkerManager"]

log = logging.getLogger("protoreg.worker")


def _caps(spec: Any) -> Any:
    """The cgroup caps of a sandbox spec (SandboxPolicy's defaults where the spec is silent)."""
    from protoreg.sandbox.cgroups import Caps
    from protoreg.sandbox.policy import SandboxPolicy

    default = SandboxPolicy()
    return Caps(*(spec.get(k, getattr(default, k)) for k in ("memory_max", "cpu_max", "pids_max")))


class WorkerManager:
    """Starts, multiplexes and stops the worker processes of the extensions in one registry."""

    def __init__(self, registry: Registry, config: WorkerConfig | None = None, *,
                 on_call: Callable[[WorkerProcess, WorkerStream | None, dict[str, Any]], Awaitable[Any]] | None = None,
                 data_dir: Callable[[Extension], Path | None] | None = None) -> None:
        self.registry = registry
        self.config = config or WorkerConfig()
        self.on_call = on_call
        self.data_dir = data_dir or (lambda ext: None)
        #: Keyed by (extension id, origin) when the extension asks for origin_isolation "origin", else by
        #: (extension id, None).
        self._pools: dict[tuple[str, str | None], ExtensionPool] = {}
        self._spare: asyncio.Task[WorkerProcess] | None = None
        #: Every worker process not yet reaped, whatever its state: close() stops them all, so no race between a
        #: starting worker and shutdown can leave a process (or its pipes) behind.
        self._processes: set[WorkerProcess] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._closed = False
        self._warned_cgroup = False
        self._closing: set[asyncio.Task[None]] = set()  # pools of updated extensions, draining
        self._disk_watch: asyncio.Task[None] | None = None
        #: Reads and verifies FILE frames' files for every worker here (threads start on first use, end at close).
        self.file_reader = _file_reader()
        self._disk_used: dict[str, int] = {}  # data dir -> bytes at its last measurement

    async def start(self) -> None:
        if self.config.prestart:
            self._replenish_spare()
        if self.config.idle_timeout is not None:
            self._reaper = asyncio.ensure_future(self._reap_idle(self.config.idle_timeout))
        if self.config.sandbox is not None:
            self._disk_watch = asyncio.ensure_future(self._watch_disks())
        subscribe = getattr(self.registry, "subscribe", None)
        if subscribe is not None:
            self._unsubscribe = subscribe(self._on_registry_event)

    def _on_registry_event(self, event: str, extension: Extension) -> None:
        # "disabled" (revoked) and "updated" stop the extension's workers at once; the next request (if allowed)
        # starts a worker with the new code.
        if event in ("uninstalled", "disabled", "updated"):
            for key in [k for k in self._pools if k[0] == extension.id]:
                pool = self._pools.pop(key)
                with contextlib.suppress(RuntimeError):
                    # issue 16 (live reload): an update lets requests in flight finish on the old workers
                    closing = pool.close_when_idle() if event == "updated" else pool.close()
                    task = asyncio.get_running_loop().create_task(closing)
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    # -- starting workers -------------------------------------------------------------------------------------
    async def _spawn(self) -> WorkerProcess:
        worker = await WorkerProcess.spawn(self.config)
        self._processes.add(worker)  # before any await: close() must see it, whatever happens next
        worker.exited.add_done_callback(lambda _f: self._processes.discard(worker))
        if self.config.cpu_affinity is not None:
            self._pin(worker, self.config.cpu_affinity)
        if self.config.sandbox is not None:
            await self._place_in_cgroup(worker)
        if self._closed:
            await worker.stop()
            raise WorkerCrashed("the session closed while a worker was starting")
        return worker

    def _pin(self, worker: WorkerProcess, cpus: frozenset[int]) -> None:
        """WorkerConfig.cpu_affinity: the worker runs on these CPUs only (those this process may use)."""
        try:
            os.sched_setaffinity(worker.pid, set(cpus) & os.sched_getaffinity(0))
        except (OSError, AttributeError) as exc:  # the worker already exited, or no sched_setaffinity here
            log.warning("could not pin the worker for %s to CPUs %s: %s", worker.label, sorted(cpus), exc)

    async def _place_in_cgroup(self, worker: WorkerProcess) -> None:
        """Move a new worker into a cgroup of its own (default caps until it is specialised), before it runs any
        extension code. Where the host can't, the reason is reported by the worker's cgroup layer. Moving a task
        between cgroups can take milliseconds in the kernel, so it runs in a thread while the interpreter starts."""
        from protoreg.sandbox import cgroups

        try:
            worker.cgroup = await asyncio.to_thread(cgroups.create, worker.pid, _caps(self.config.sandbox or {}))
        except OSError as exc:
            worker.cgroup_error = str(exc)
            if not self._warned_cgroup:
                self._warned_cgroup = True
                log.warning("workers run without cgroup caps (memory and CPU bounded by rlimits only): %s", exc)
            return
        group = worker.cgroup
        worker.exited.add_done_callback(lambda _f: group.remove())

    def _replenish_spare(self) -> None:
        if not self._closed and (self._spare is None or self._spare.done()):
            self._spare = asyncio.ensure_future(self._spawn())

    async def _take_spare(self) -> WorkerProcess:
        spare, self._spare = self._spare, None
        worker: WorkerProcess | None = None
        if spare is not None:
            with contextlib.suppress(Exception):
                worker = await spare
        if worker is None or not worker.alive:
            worker = await self._spawn()
        if self.config.prestart:
            self._replenish_spare()
        return worker

    def sandbox_spec(self, ext: Extension) -> dict[str, Any] | None:
        """The SandboxPolicy fields for ``ext``'s workers (None: no sandbox)."""
        if self.config.sandbox is None:
            return None
        from protoreg.sandbox import default_read_paths

        spec: dict[str, Any] = {**self.config.sandbox, **self.config.sandbox_per_extension.get(ext.id, {})}
        spec["read_paths"] = [*default_read_paths(ext.root), *spec.get("read_paths", ())]
        data = self.data_dir(ext)
        spec["write_paths"] = [*([str(data)] if data is not None else []), *spec.get("write_paths", ())]
        spec["required"] = sorted(spec.get("required", ()))
        return spec

    def init_config(self, ext: Extension, worker: WorkerProcess | None = None,
                    sandbox: str | None = None) -> dict[str, Any]:
        handlers = {h.protocol: h.uriHandlerScript for h in ext.manifest.protocol_handlers if h.uriHandlerScript}
        commands = {f"protoreg-cmd-{n}": c.script for n, c in (getattr(ext.manifest, "commands", None) or {}).items()}
        script = None
        if sandbox is not None:  # a named sandbox's worker: only its script, only its grants (protoreg/sandboxes.py)
            from protoreg.sandboxes import sandbox_extension

            script = ext.manifest.sandboxes[sandbox].script
            ext, handlers, commands = sandbox_extension(ext, sandbox), {}, {}
        spec = self.sandbox_spec(ext)
        if spec is not None and worker is not None:
            if worker.cgroup is not None:
                worker.cgroup.set_caps(_caps(spec))
                spec["cgroup"] = worker.cgroup.describe()
            else:
                spec["cgroup_unavailable"] = worker.cgroup_error or "the host did not create a cgroup"
        return {"label": ext.id, "extension": {"id": ext.id, "name": ext.name, "version": ext.version},
                "handlers": handlers, "window": self.config.window, "sandbox": spec,
                "event_loop": self.config.event_loop,  # protoreg/loops.py
                # Extension commands (protoreg/commands.py): loaded on first use, on a scheme nothing can claim.
                "commands": commands, "sandbox_script": script,
                # Response filters (protoreg/filters.py): loaded on first use, on a scheme nothing can claim.
                "filters": {} if sandbox is not None else {
                    f"protoreg-filter-{i}": f.script
                    for i, f in enumerate(getattr(ext.manifest, "response_filters", None) or ())},
                "bundle_root": str(ext.root), "data_dir": str(data) if (data := self.data_dir(ext)) else None}

    async def _check_disk(self, ext: Extension) -> int | None:
        """The data dir cap of ``ext``'s next worker (None: uncapped); refuses to start one when the dir holds more
        (protoreg/sandbox/diskquota.py). A measurement under the cap stands: only workers write there and the
        watcher re-measures while they run, so a cold start walks the directory only the first time, or after a
        measurement over the cap (to see whether space was freed)."""
        if self.config.sandbox is None:
            return None
        from protoreg.sandbox.policy import SandboxPolicy

        settings = {**self.config.sandbox, **self.config.sandbox_per_extension.get(ext.id, {})}
        limit = settings.get("disk_max", SandboxPolicy.disk_max)
        data = self.data_dir(ext)
        if limit is None or data is None:
            return None
        used = self._disk_used.get(str(data))
        if used is None or used > limit:
            from protoreg.sandbox.diskquota import usage

            used = self._disk_used[str(data)] = await asyncio.to_thread(usage, data)
        if used > limit:
            raise DataDirFull(f"extension {ext.id} was not started: its data dir holds {used} bytes, over its cap of "
                              f"{limit} bytes (SandboxPolicy.disk_max). Free space in {data}, or raise the cap for "
                              f"it: WorkerConfig(sandbox_per_extension={{{ext.id!r}: {{'disk_max': ...}}}})",
                              extension=ext.id)
        return int(limit)

    async def _watch_disks(self) -> None:
        """Measure the data dir of every running, capped worker each period (once per dir); kill the workers of one
        over its cap (the reason reaches their requests in flight and the log)."""
        from protoreg.sandbox.diskquota import PERIOD, usage

        while True:
            started = time.monotonic()
            capped: dict[str, tuple[int, list[WorkerProcess]]] = {}
            for worker in list(self._processes):
                if worker.alive and worker.data_dir is not None and worker.disk_max is not None:
                    capped.setdefault(worker.data_dir, (worker.disk_max, []))[1].append(worker)
            for data, (limit, workers) in capped.items():
                used = self._disk_used[data] = await asyncio.to_thread(usage, data)
                if used <= limit:
                    continue
                reason = (f"wrote past its data dir's cap: {used} bytes in {data}, over {limit} "
                          "(SandboxPolicy.disk_max), and was killed")
                for worker in workers:
                    if worker.alive:
                        worker.violation = reason
                        worker.logger.error("worker for %s (pid %s) %s", worker.label, worker.pid, reason)
                        worker.kill()
                log.error("extension %s %s; its next worker starts only once the data dir is back under the cap",
                          workers[0].extension_id, reason.replace(", and was killed", ""))
            spent = time.monotonic() - started
            await asyncio.sleep(max(PERIOD, spent * 50))  # measuring takes at most 2% of the time

    async def _start_worker(self, ext: Extension, origin: str | None = None,
                            sandbox: str | None = None) -> WorkerProcess:
        disk_max = await self._check_disk(ext)
        worker = await self._take_spare()
        config = self.init_config(ext, worker, sandbox)
        payload = encode_init(config, dict(ext.files))
        worker.on_call = self.on_call
        worker.bound_origin = origin
        worker.extension_id, worker.sandbox = ext.id, sandbox
        # the directory it writes (and its FILE frames may name), and its cap: kept even if the grant changes later
        worker.data_dir, worker.disk_max = config["data_dir"], disk_max
        worker.file_reader = self.file_reader
        hello = await worker.specialise(ext.id if sandbox is None else f"{ext.id}#{sandbox}", payload)
        for scheme, err in (hello.get("load_errors") or {}).items():
            worker.logger.error("extension %s, scheme %s: %s", ext.id, printable(str(scheme)), printable(str(err)))
        return worker

    def pool(self, ext: Extension, origin: str | None = None) -> ExtensionPool:
        """The pool serving ``origin`` for ``ext``: one per origin when the extension asks for origin isolation."""
        isolated = getattr(ext.manifest, "origin_isolation", "extension") == "origin"
        key = (ext.id, origin if isolated else None)
        pool = self._pools.get(key)
        if pool is None:
            label = ext.id if key[1] is None else f"{ext.id} for {key[1]}"
            pool = self._pools[key] = ExtensionPool(label, self.config, lambda: self._start_worker(ext, key[1]))
        return pool

    def sandbox_pool(self, ext: Extension, name: str) -> ExtensionPool:
        """The pool of the named sandbox ``name`` of ``ext`` (protoreg/sandboxes.py): started on the first message,
        stopped when idle, restarted with backoff after a crash, like a handler's."""
        key = (ext.id, f"#sandbox:{name}")  # never a serialized origin, so never a handler pool's key
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = ExtensionPool(f"{ext.id}#{name}", self.config,
                                                    lambda: self._start_worker(ext, None, name))
        return pool

    async def dispatch_sandbox(self, ext: Extension, name: str, head: dict[str, Any], body: bytes,
                               origin: str) -> WorkerStream:
        """Send a message request to the named sandbox's worker; ``origin`` is the calling handler's request origin
        (its storage partition), set by the parent, never by either worker."""
        if self._closed:
            raise WorkerCrashed("the session is closed", extension=ext.id)
        pool = self.sandbox_pool(ext, name)
        worker = await pool.acquire()
        if not worker.alive:
            worker = await pool.acquire()
        stream = worker.request(head, body)
        stream.origin = origin
        return stream

    # -- requests ---------------------------------------------------------------------------------------------
    async def dispatch(self, ext: Extension, head: dict[str, Any],
                       body: bytes | AsyncIterable[bytes] | None, origin: str | None = None) -> WorkerStream:
        """Send a request for ``origin`` (the serialized origin of ``head["url"]``) to one of the extension's
        workers, starting one if needed."""
        if self._closed:
            raise WorkerCrashed("the session is closed", extension=ext.id)
        if (reason := getattr(self.registry, "disabled", {}).get(ext.id)) is not None:
            from protoreg.errors import ExtensionRevoked

            raise ExtensionRevoked(ext.id, reason)  # revoked while this request was on its way: no new worker
        if origin is not None and getattr(ext.manifest, "origin_isolation", "extension") == "origin":
            await self._make_room(ext, origin)
        pool = self.pool(ext, origin)
        worker = await pool.acquire()
        if not worker.alive:  # died between acquire and now: one more try with a fresh worker
            worker = await pool.acquire()
        return worker.request(head, body)

    async def _make_room(self, ext: Extension, origin: str) -> None:
        """Bound the workers of an origin-isolated extension (WorkerConfig.max_isolated_origins): whoever makes
        requests chooses the hosts, so without a bound every new host was a new process. Keeps its pools in least
        recently used order; a new origin over the bound stops the least recently used idle one, or is refused."""
        key = (ext.id, origin)
        if key in self._pools:
            self._pools[key] = self._pools.pop(key)  # most recently used last
            return
        mine = [k for k in self._pools if k[0] == ext.id and k[1] is not None and not k[1].startswith("#sandbox:")]
        if len(mine) < self.config.max_isolated_origins:
            return
        idle = next((k for k in mine if all(w.in_flight == 0 for w in self._pools[k].workers)), None)
        if idle is None:
            raise HandlerError(
                f"extension {ext.id} isolates origins and already runs {len(mine)} of them, all busy "
                f"(WorkerConfig.max_isolated_origins = {self.config.max_isolated_origins}): {origin} was not started. "
                "Retry when one finishes, or raise max_isolated_origins", status=503, extension=ext.id)
        evicted = self._pools.pop(idle)
        self.pool(ext, origin)  # its slot is taken before the await: concurrent new origins count it
        await evicted.close()

    async def _reap_idle(self, idle_timeout: float) -> None:
        period = max(0.05, min(idle_timeout / 4, 1.0))
        while True:
            await asyncio.sleep(period)
            for pool in list(self._pools.values()):
                await pool.stop_idle(idle_timeout)

    def stats(self) -> list[dict[str, Any]]:
        return [pool.stats() for pool in self._pools.values()]

    def workers(self) -> list[WorkerProcess]:
        return [w for pool in self._pools.values() for w in pool.workers]

    async def close(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in (self._reaper, self._disk_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in list(self._closing):  # draining pools: their workers are stopped below with all others
            task.cancel()
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
        if self._spare is not None:
            spare, self._spare = self._spare, None
            with contextlib.suppress(Exception):
                await spare
        await asyncio.gather(*(w.stop() for w in list(self._processes)), return_exceptions=True)
        # Idle threads end at once; a read in flight (at most one MAX_FILE file per thread) finishes first: no
        # thread outlives the session. A fresh executor (no thread until used) in case the manager is started again.
        old, self.file_reader = self.file_reader, _file_reader()
        old.shutdown(wait=True, cancel_futures=True)


def _file_reader() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(FILE_READ_THREADS, thread_name_prefix="protoreg-file")
