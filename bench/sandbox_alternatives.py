"""The sandbox's hand-built layers next to the well-kept tools they could have been, measured in the same run.

    python bench/sandbox_alternatives.py

1. Filesystem: bubblewrap (``bwrap``, Flatpak's sandbox) starting the worker interpreter in a new user, network,
   IPC and mount namespace with the same read-only binds, against the in-process minimal root that protoreg builds
   in an already running (warm spare) worker. Skipped without ``bwrap`` on PATH.
2. seccomp: the same deny-list compiled and loaded by libseccomp (through ``pyseccomp``, its ctypes binding)
   against protoreg's assembled filter. Skipped without ``pyseccomp``.
Each figure is the median over forked children (ms), with a plain fork/exit or a plain ``python -c pass`` as the
baseline of its row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import median
from protoreg.sandbox import mounts, namespaces, seccomp
from protoreg.sandbox.policy import python_read_paths

RUNS = 20


def in_child(fn: Callable[[], object]) -> float:
    """Milliseconds from fork to the child's exit, running ``fn`` in the child."""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            fn()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the child failed")
    return (time.perf_counter() - t) * 1000


def runs(fn: Callable[[], float]) -> float:
    return median([fn() for _ in range(RUNS)])


def spawn(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def row(name: str, ours: float, base: float, base_name: str) -> None:
    print(f"{name:<52} {ours:8.2f} ms   {base_name} {base:8.2f} ms   ratio {ours / base:5.2f}x")


def filesystem() -> None:
    paths = python_read_paths()
    base = runs(lambda: in_child(lambda: None))
    ours = runs(lambda: in_child(lambda: (namespaces.enter_namespaces(), mounts.build_root(paths, ()))))
    row("namespaces + minimal root, in-process (warm spare)", ours, base, "fork+exit")
    plain = runs(lambda: spawn([os.path.realpath(sys.executable), "-I", "-c", "pass"]))
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        print("bubblewrap: skipped (no bwrap on PATH; Debian package 'bubblewrap')")
        return
    python = os.path.realpath(sys.executable)
    binds = ["--ro-bind", "/usr", "/usr"]
    for link in ("/lib", "/lib64", "/bin"):
        if os.path.islink(link):
            binds += ["--symlink", os.readlink(link), link]
    binds += [arg for p in (*paths, *mounts.SYSTEM_FILES, os.path.dirname(python))
              if os.path.exists(p) and not p.startswith("/usr/") for arg in ("--ro-bind", p, p)]
    cmd = [bwrap, "--unshare-user", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--dev", "/dev", *binds,
           "--", python, "-I", "-c", "pass"]
    row("bubblewrap + python -c pass (a cold worker per start)", runs(lambda: spawn(cmd)), plain,
        "python -c pass")


def seccomp_filters() -> None:
    base = runs(lambda: in_child(lambda: None))
    from protoreg.sandbox._libc import PR_SET_NO_NEW_PRIVS, prctl

    def ours() -> None:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install()

    row("protoreg's assembled filter (build + load)", runs(lambda: in_child(ours)), base, "fork+exit")
    try:
        import pyseccomp as libseccomp
    except ImportError:
        print("libseccomp: skipped (pip install pyseccomp to compare)")
        return

    def theirs() -> None:
        f = libseccomp.SyscallFilter(libseccomp.ALLOW)
        for name in seccomp._DENY:
            try:
                f.add_rule(libseccomp.ERRNO(1), name)
            except Exception:  # noqa: S112 - a name this libseccomp does not know
                continue
        f.load()

    row("libseccomp via pyseccomp (same deny names; build + load)", runs(lambda: in_child(theirs)), base,
        "fork+exit")


if __name__ == "__main__":
    print(f"{RUNS} runs each, load average {os.getloadavg()[0]:.2f}")
    filesystem()
    seccomp_filters()
