"""What the host asks of the sandbox (SandboxPolicy) and what it got (SandboxReport)."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protoreg.errors import SandboxError

#: Layer names, in the order they are applied (docs/sandbox.md explains the order).
LAYERS = ("fds", "namespaces", "filesystem", "rlimits", "cgroup", "no_new_privs", "landlock", "seccomp")
#: System library directories (read-only): shared libraries that extension modules such as ctypes load lazily.
SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")


@dataclass(frozen=True)
class SandboxPolicy:
    """The layers a worker applies to itself. Defaults are on and tight; ``None`` leaves an rlimit alone."""

    read_paths: tuple[str, ...] = ()         # read-only: the Python installation and the extension bundle
    write_paths: tuple[str, ...] = ()        # read-write: the extension's data dir, only when granted
    rlimit_as: int | None = 1 << 30          # address space (virtual memory), bytes
    rlimit_cpu: int | None = 3600            # CPU seconds over the worker's life (SIGXCPU, then SIGKILL 1 s later)
    rlimit_nofile: int | None = 256          # open file descriptors
    rlimit_nproc: int | None = 64            # processes of this uid (ignored for root: seccomp blocks fork instead)
    network_namespace: bool = True           # new user, network, mount and IPC namespaces (the "namespaces" layer)
    filesystem: bool = True                  # a minimal root holding only read_paths and write_paths (needs namespaces)
    memory_max: int | None = 1 << 30         # cgroup memory cap, bytes: every page charged (anon, shm, memfd)
    cpu_max: float | None = 1.0              # cgroup CPU cap, in CPUs (0.5 = half of one CPU), however many threads
    pids_max: int | None = 256               # cgroup cap on tasks (threads included; seccomp forbids processes)
    disk_max: int | None = 4 << 30           # bytes the data dir may hold (host-measured) and RLIMIT_FSIZE per file
    landlock: bool = True
    seccomp: bool = True
    cgroup: str | None = None                # set by the host: the cgroup it placed the worker in, with its caps
    cgroup_unavailable: str = ""             # set by the host: why it could not (reported by the cgroup layer)
    required: frozenset[str] = frozenset()   # layers that must engage, or apply_sandbox raises SandboxError
    keep_fds: tuple[int, ...] = ()           # descriptors besides 0-2 that stay open (the IPC channel)

    def __post_init__(self) -> None:
        problems = [f"{name}={getattr(self, name)!r} (must be a positive integer or None)"
                    for name in ("rlimit_as", "rlimit_cpu", "rlimit_nofile", "rlimit_nproc")
                    if getattr(self, name) is not None and not (isinstance(getattr(self, name), int)
                                                                and getattr(self, name) > 0)]
        if self.cpu_max is not None and not (isinstance(self.cpu_max, (int, float)) and 0.01 <= self.cpu_max <= 1024):
            problems.append(f"cpu_max={self.cpu_max!r} (must be a number of CPUs between 0.01 and 1024, or None)")
        for name in ("memory_max", "pids_max", "disk_max"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                problems.append(f"{name}={value!r} (must be a positive integer or None)")
        unknown = sorted(set(self.required) - set(LAYERS))
        if unknown:
            problems.append(f"unknown required layer(s) {', '.join(unknown)} (known: {', '.join(LAYERS)})")
        for name in ("read_paths", "write_paths"):
            relative = [p for p in getattr(self, name) if not os.path.isabs(p)]
            if relative:
                problems.append(f"{name} must be absolute paths, got {', '.join(map(repr, relative))}")
        if problems:
            raise SandboxError("invalid SandboxPolicy: " + "; ".join(problems) + ". Fix these fields in the "
                               "sandbox configuration (WorkerConfig.sandbox or sandbox_per_extension)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["required"] = sorted(self.required)
        return d


@dataclass(frozen=True)
class LayerStatus:
    name: str
    active: bool
    detail: str  # what engaged, or why not


@dataclass(frozen=True)
class SandboxReport:
    layers: tuple[LayerStatus, ...] = field(default_factory=tuple)

    def active(self, name: str) -> bool:
        return any(layer.name == name and layer.active for layer in self.layers)

    def get(self, name: str) -> LayerStatus | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(layer) for layer in self.layers]}


def python_read_paths() -> tuple[str, ...]:
    """What imports need: the stdlib and site-packages of the venv and of its base installation, and protoreg's
    own package. Not the bare prefixes: for a system Python that would be all of /usr."""
    paths = {str(Path(__file__).resolve().parents[1]), *site.getsitepackages()}
    ours = sysconfig.get_paths()
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    paths.update(ours[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if ours.get(key))
    paths.update(base[key] for key in ("stdlib", "platstdlib") if base.get(key))
    paths.update(interpreter_files())
    return tuple(sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}))


def interpreter_files() -> tuple[str, ...]:
    """The interpreter's executable and its shared libpython, if any: a worker has them mapped already and never
    opens them, but a sampling profiler (py-spy) reads them through the worker's root to find the interpreter's
    symbols. Read-only like the rest; the worker can't execute anything (seccomp denies execve)."""
    files = [sys.executable]
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname:
        files.append(os.path.join(libdir, soname))
    return tuple(os.path.realpath(f) for f in files if f and os.path.isfile(f))


def default_read_paths(bundle_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """Read-only paths for a worker serving the bundle at ``bundle_dir``."""
    return (*python_read_paths(), *SYSTEM_LIB_DIRS, os.path.realpath(bundle_dir))
