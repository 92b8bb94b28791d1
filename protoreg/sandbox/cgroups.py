"""Memory, CPU and task caps per worker, through cgroups, set by the host.

An rlimit can't bound what a worker charges outside its address space (System V or POSIX shared memory, memfds,
page cache) or how many CPUs its threads use at once (RLIMIT_CPU counts seconds over the worker's whole life). A
cgroup can: the host creates one per worker, writes its caps, and moves the worker into it before the worker runs
any extension code. The worker can neither see nor change it (its filesystem holds no ``/sys``, and it has no
capability over the host's cgroup tree).

- **cgroup v2** (preferred): ``memory.max``, ``memory.swap.max`` = 0, ``cpu.max`` and ``pids.max`` in a child of the
  host's own cgroup. The kernel allows that only when the host's cgroup has those controllers enabled for its
  children, which is true at the root of a hierarchy or in a subtree delegated to the host (``systemd-run --user
  --scope -p Delegate=yes``); elsewhere v2 is reported unavailable with that fix.
- **cgroup v1** (hybrid hosts): ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``),
  ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` and ``pids.max``, in children of the host's cgroup in each hierarchy.

Where neither can be used, :func:`probe` says so and why; the worker then has only its rlimits.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from protoreg.sandbox.policy import LayerStatus

__all__ = ["Caps", "WorkerCgroup", "create", "detect", "probe"]

log = logging.getLogger("protoreg.sandbox")

CPU_PERIOD_US = 100_000
_counter = itertools.count(1)


@dataclass(frozen=True)
class Caps:
    memory_max: int | None = None  # bytes
    cpu_max: float | None = None   # CPUs
    pids_max: int | None = None    # tasks (threads included)

    def describe(self) -> str:
        parts = []
        if self.memory_max is not None:
            parts.append(f"memory {self.memory_max / 2**20:g} MiB")
        if self.cpu_max is not None:
            parts.append(f"CPU {self.cpu_max:g}")
        if self.pids_max is not None:
            parts.append(f"tasks {self.pids_max}")
        return ", ".join(parts) or "no caps"


@dataclass(frozen=True)
class _Backend:
    version: str                    # "v2" or "v1"
    dirs: dict[str, Path]           # controller ("memory", "cpu", "pids"; "unified" for v2) -> host's cgroup dir


def _mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) >= 5 and len(rfields) >= 3:
                    out.append((fields[4].replace("\\040", " "), rfields[0], rfields[2]))
    except OSError:
        pass
    return out


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key (controller list for v1, "" for v2) -> this process's path in it."""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    out[parts[1]] = parts[2]
    except OSError:
        pass
    return out


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


@functools.lru_cache(maxsize=1)
def detect() -> tuple[_Backend | None, str]:
    """The cgroup backend the host can use, or None and why not (cached: the answer does not change)."""
    mounts, own = _mountinfo(), _own_cgroups()
    reasons = []
    v2 = next((m for m, fstype, _ in mounts if fstype == "cgroup2"), None)
    if v2 is not None and "" in own:
        here = Path(v2) / own[""].lstrip("/")
        try:
            enabled = set((here / "cgroup.subtree_control").read_text().split())
        except OSError:
            enabled = set()
        wanted = {"memory", "cpu", "pids"}
        if wanted <= enabled and _writable_dir(here):
            return _Backend("v2", {"unified": here}), ""
        reasons.append(f"cgroup v2 at {here} does not delegate {', '.join(sorted(wanted - enabled)) or 'write access'}"
                       " to its children")
    dirs: dict[str, Path] = {}
    for controller in ("memory", "cpu", "pids"):
        for point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options.split(","):
                key = next((k for k in own if controller in k.split(",")), None)
                if key is not None and _writable_dir(Path(point) / own[key].lstrip("/")):
                    dirs[controller] = Path(point) / own[key].lstrip("/")
                break
    if "memory" in dirs and "cpu" in dirs:
        return _Backend("v1", dirs), ""
    if mounts and any(fstype == "cgroup" for _, fstype, _ in mounts):
        reasons.append("cgroup v1 memory and cpu hierarchies are not writable by this process")
    if not reasons:
        reasons.append("no cgroup filesystem is mounted")
    return None, "; ".join(reasons)


class WorkerCgroup:
    """The cgroup(s) of one worker process."""

    def __init__(self, backend: _Backend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.dirs: dict[str, Path] = {}
        try:
            for controller, parent in backend.dirs.items():
                path = parent / name
                path.mkdir()
                self.dirs[controller] = path
        except OSError:
            self.remove()
            raise
        self.caps = Caps()

    def _write(self, controller: str, filename: str, value: str) -> None:
        path = self.dirs.get(controller)
        if path is not None and (path / filename).exists():
            (path / filename).write_text(value)

    def set_caps(self, caps: Caps) -> None:
        if self.backend.version == "v2":
            self._write("unified", "memory.max", str(caps.memory_max or "max"))
            self._write("unified", "memory.swap.max", "0" if caps.memory_max else "max")
            quota = "max" if caps.cpu_max is None else str(max(1000, int(caps.cpu_max * CPU_PERIOD_US)))
            self._write("unified", "cpu.max", f"{quota} {CPU_PERIOD_US}")
            self._write("unified", "pids.max", str(caps.pids_max or "max"))
        else:
            limit = str(caps.memory_max) if caps.memory_max else "-1"
            if caps.memory_max:
                self._write("memory", "memory.limit_in_bytes", limit)
                self._write("memory", "memory.memsw.limit_in_bytes", limit)
            else:
                self._write("memory", "memory.memsw.limit_in_bytes", limit)
                self._write("memory", "memory.limit_in_bytes", limit)
            self._write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US))
            quota = "-1" if caps.cpu_max is None else str(max(1000, int(caps.cpu_max * CPU_PERIOD_US)))
            self._write("cpu", "cpu.cfs_quota_us", quota)
            self._write("pids", "pids.max", str(caps.pids_max or "max"))
        self.caps = caps

    def attach(self, pid: int) -> None:
        for path in self.dirs.values():
            (path / "cgroup.procs").write_text(str(pid))

    def describe(self) -> str:
        where = next(iter(self.dirs.values()), None)
        return f"{self.name}: cgroup {self.backend.version} ({self.caps.describe()}) at {where}"

    def remove(self) -> None:
        """Remove the (now empty) cgroup directories; a failure is logged, never raised."""
        for controller, path in list(self.dirs.items()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove the worker cgroup %s: %s", path, exc)
                continue
            self.dirs.pop(controller, None)


def create(worker_pid: int, caps: Caps) -> WorkerCgroup:
    """A new cgroup with ``caps`` holding ``worker_pid``; raises OSError when the host has no usable backend."""
    backend, why = detect()
    if backend is None:
        raise OSError(f"no usable cgroup: {why}")
    group = WorkerCgroup(backend, f"protoreg-{os.getpid()}-{worker_pid}-{next(_counter)}")
    try:
        group.set_caps(caps)
        group.attach(worker_pid)
    except OSError:
        group.remove()
        raise
    return group


def probe() -> LayerStatus:
    backend, why = detect()
    if backend is None:
        return LayerStatus("cgroup", False, f"{why}: memory and CPU are bounded only by RLIMIT_AS and the lifetime "
                                            "RLIMIT_CPU (shared memory and memfds are not capped)")
    return LayerStatus("cgroup", True, f"cgroup {backend.version}: memory, CPU"
                                       f"{' and task' if 'pids' in backend.dirs or backend.version == 'v2' else ''} "
                                       f"caps per worker under {next(iter(backend.dirs.values()))}")
