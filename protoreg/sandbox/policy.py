"""What the host asks of the sandbox (SandboxPolicy) and what it got (SandboxReport)."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Layer names, in the order they are applied.
LAYERS = ("fds", "userns+netns", "rlimits", "no_new_privs", "landlock", "seccomp")
#: System library directories (read-only): shared libraries that extension modules such as ctypes load lazily.
SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")


@dataclass(frozen=True)
class SandboxPolicy:
    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    rlimit_as: int | None = 1 << 30          # address space (virtual memory), bytes
    rlimit_cpu: int | None = 3600            # CPU seconds over the worker's life
    rlimit_nofile: int | None = 256          # open file descriptors
    rlimit_nproc: int | None = 64            # processes (ignored for root: seccomp blocks fork instead)
    network_namespace: bool = True
    landlock: bool = True
    seccomp: bool = True
    required: frozenset[str] = frozenset()   # layers that must engage, or the worker refuses to start
    keep_fds: tuple[int, ...] = ()           # descriptors besides 0-2 that stay open (the IPC channel)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["required"] = sorted(self.required)
        return d


@dataclass(frozen=True)
class LayerStatus:
    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class SandboxReport:
    layers: tuple[LayerStatus, ...] = field(default_factory=tuple)

    def active(self, name: str) -> bool:
        return any(layer.name == name and layer.active for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [asdict(layer) for layer in self.layers]}


def python_read_paths() -> tuple[str, ...]:
    """The Python installation (a venv's and its base's), site-packages, and protoreg's own package."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(__file__).resolve().parents[1])}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(p)
    for p in site.getsitepackages():
        paths.add(p)
    return tuple(sorted(os.path.realpath(p) for p in paths if os.path.exists(p)))


def default_read_paths(bundle_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    return (*python_read_paths(), *SYSTEM_LIB_DIRS, os.path.realpath(bundle_dir))
