"""probe(): which layers this machine offers, found out in a forked child so the caller stays unrestricted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from protoreg.sandbox import cgroups, landlock, mounts, namespaces, seccomp
from protoreg.sandbox._libc import PR_SET_NO_NEW_PRIVS, check, prctl
from protoreg.sandbox.policy import LayerStatus, SandboxReport


def _attempt(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except Exception as exc:  # the reason travels to the parent
        return f"{type(exc).__name__}: {exc}"
    return None


def _try_layers(abi: int) -> dict[str, str | None]:
    """In the child: engage each restricting layer for real (an empty Landlock ruleset denies everything, which is
    fine: the child only writes to a pipe it already holds). None means it worked, else why not."""
    out: dict[str, str | None] = {"namespaces": _attempt(namespaces.enter_namespaces)}
    if out["namespaces"] is None:
        from protoreg.sandbox.policy import python_read_paths

        out["filesystem"] = _attempt(lambda: mounts.build_root(python_read_paths(), ()))
    else:
        out["filesystem"] = "needs the 'namespaces' layer, which is not available"
    out["no_new_privs"] = _attempt(lambda: check(prctl(PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)"))
    out["landlock"] = ("landlock_create_ruleset reports no ABI: Landlock is not built in or not enabled "
                       "(lsm= boot parameter)") if abi == 0 else _attempt(lambda: landlock.restrict((), (), abi))
    out["seccomp"] = seccomp.supported() or _attempt(seccomp.install)
    return out


def probe() -> SandboxReport:
    """What this machine offers, without restricting the caller.

    The Landlock ABI comes from a non-restricting query; user namespaces, no_new_privs, Landlock and seccomp are
    really engaged in a forked child that then exits. Call it from the host (``protoreg doctor``, the dashboard,
    test skips), not from a sandboxed worker, which can't fork.
    """
    abi = landlock.abi_version()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_fd)
            os.write(write_fd, json.dumps(_try_layers(abi)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read():
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        failed: dict[str, str | None] = json.loads(b"".join(chunks))
    except ValueError:
        failed = {name: "the probe child died before reporting" for name in ("namespaces", "filesystem",
                                                                             "no_new_privs", "landlock", "seccomp")}
    details = {
        "namespaces": "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS|CLONE_NEWIPC) and a 1:1 uid/gid map work",
        "filesystem": "a minimal root (open_tree, mount_setattr, move_mount, pivot_root) can be built",
        "no_new_privs": "prctl(PR_SET_NO_NEW_PRIVS) works",
        "landlock": f"ABI {abi}: filesystem" + (", TCP bind/connect" if abi >= 4 else "")
                    + (", signal and abstract-socket scoping" if abi >= 6 else ""),
        "seccomp": f"filter mode on {seccomp.MACHINE}",
    }

    def status(name: str) -> LayerStatus:
        why = failed.get(name)
        return LayerStatus(name, why is None, details[name] if why is None else why)

    return SandboxReport((LayerStatus("fds", True, "always available (close_range)"), status("namespaces"),
                          status("filesystem"), LayerStatus("rlimits", True, "always available"),
                          cgroups.probe(), status("no_new_privs"), status("landlock"), status("seccomp")))

