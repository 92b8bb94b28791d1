"""What a worker inherits from its parent: descriptors and environment variables. Both are pared down to what the
worker needs (the IPC channel and stdio; a handful of harmless variables) before handler code runs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping

#: Variables a worker gets whatever the parent's environment holds: UTF-8 I/O, no .pyc writes (the sandbox
#: would deny them), and a fixed locale.
BASE_ENV: Mapping[str, str] = {"LANG": "C.UTF-8", "PYTHONUTF8": "1", "PYTHONDONTWRITEBYTECODE": "1",
                               "PYTHONIOENCODING": "utf-8"}


def scrubbed_env(keep: Iterable[str] = ("TZ",), extra: Mapping[str, str] | None = None,
                 source: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a worker: :data:`BASE_ENV`, the ``keep`` names copied from ``source``
    (default ``os.environ``) when set, then ``extra``. Everything else (tokens, ``HOME``, proxies, ``LD_*``,
    ``PYTHONPATH``) is dropped."""
    src = os.environ if source is None else source
    env = dict(BASE_ENV)
    env.update({name: src[name] for name in keep if name in src})
    env.update(extra or {})
    return env


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def open_fds() -> list[int]:
    """The descriptors open in this process, from /proc/self/fd (without the one used to list it)."""
    return sorted(fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd))


def close_fds(keep: Iterable[int]) -> int:
    """Close every descriptor except 0-2 and ``keep``; returns how many were closed.

    Uses ``close_range`` through :func:`os.closerange` over the gaps between kept descriptors, so it also works
    without /proc (then the count is of what /proc would have shown: 0).
    """
    kept = sorted({fd for fd in keep if fd > 2})
    try:
        before = open_fds()
    except OSError:
        before = []
    top = max([*before, *kept, 2]) + 1 if before else os.sysconf("SC_OPEN_MAX")
    low = 3
    for fd in kept:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(top, low))
    return sum(1 for fd in before if fd > 2 and fd not in kept)
