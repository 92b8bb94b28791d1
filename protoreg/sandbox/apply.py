"""apply_sandbox: the worker restricts itself, layer by layer, before any handler code runs."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from protoreg.errors import SandboxError
from protoreg.sandbox import landlock, mounts, namespaces, seccomp
from protoreg.sandbox._libc import PR_SET_NO_NEW_PRIVS, check, prctl
from protoreg.sandbox.inherit import close_fds
from protoreg.sandbox.policy import LayerStatus, SandboxPolicy, SandboxReport
from protoreg.sandbox.rlimits import apply_rlimits

log = logging.getLogger("protoreg.sandbox")

#: What to change when a required layer can't engage.
FIXES = {
    "fds": "make /proc available to the worker, or drop 'fds' from the required layers",
    "namespaces": "enable unprivileged user namespaces (sysctl user.max_user_namespaces > 0, and on Debian/Ubuntu "
                    "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0), or drop "
                    "'namespaces' from the required layers",
    "filesystem": "use Linux 5.12 or later (open_tree, move_mount and mount_setattr) with the 'namespaces' layer "
                  "active, or drop 'filesystem' from the required layers",
    "cgroup": "run protoreg where it may create cgroups: as root, or inside a delegated cgroup v2 subtree whose "
              "cgroup.subtree_control enables memory, cpu and pids (e.g. systemd-run --user --scope -p Delegate=yes "
              "...), or drop 'cgroup' from the required layers; without it memory and CPU are bounded only by "
              "RLIMIT_AS and the lifetime RLIMIT_CPU",
    "rlimits": "raise the hard limits the worker inherits, or drop 'rlimits' from the required layers",
    "no_new_privs": "use Linux 3.5 or later, or drop 'no_new_privs' from the required layers",
    "landlock": "boot a kernel with Landlock enabled (CONFIG_SECURITY_LANDLOCK=y and 'landlock' in the lsm= boot "
                "parameter), or drop 'landlock' from the required layers",
    "seccomp": "use a kernel with CONFIG_SECCOMP_FILTER on x86_64 or aarch64, or drop 'seccomp' from the required "
               "layers",
}


def thread_count() -> int:
    """Threads in this process, including ones Python didn't start (from /proc/self/task when available)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def apply_sandbox(policy: SandboxPolicy) -> SandboxReport:
    """Restrict the calling process, irreversibly, and report which layers engaged.

    Call it while the process is single-threaded, before importing handler code or starting an event loop:
    Landlock and seccomp bind the calling thread and what it creates afterwards, and ``unshare(CLONE_NEWUSER)``
    fails in a threaded process. A layer that can't engage is reported inactive with the reason and logged; if it
    is in ``policy.required``, :class:`SandboxError` is raised instead and the caller must exit, since the layers
    before it have already been applied.
    """
    threads = thread_count()
    if threads > 1:
        raise SandboxError(f"apply_sandbox must run before any thread starts, but this process has {threads} "
                           "threads: Landlock and seccomp bind only the calling thread, and a threaded process can't "
                           "enter a user namespace. Call it first thing in the worker, before starting threads")
    abi = landlock.abi_version()
    own_cgroup = _own_cgroup()  # read before the filesystem layer hides /proc
    namespaced: list[bool] = []
    steps: list[tuple[str, bool, Callable[[], str]]] = [
        ("fds", True, lambda: f"kept 0-2 and {sorted(set(policy.keep_fds))}; closed {close_fds(policy.keep_fds)}"),
        ("namespaces", policy.network_namespace, lambda: _namespaces(namespaced)),
        ("filesystem", policy.filesystem, lambda: _filesystem(policy, namespaced)),
        ("rlimits", True, lambda: apply_rlimits(policy)),
        ("cgroup", bool(policy.cgroup or policy.cgroup_unavailable), lambda: _cgroup(policy, own_cgroup)),
        ("no_new_privs", True, _no_new_privs),
        ("landlock", policy.landlock, lambda: _landlock(policy, abi)),
        ("seccomp", policy.seccomp, _seccomp),
    ]
    layers = []
    for name, wanted, step in steps:
        if not wanted:
            status = LayerStatus(name, False, "disabled by the host configuration")
        else:
            try:
                status = LayerStatus(name, True, step())
            except (OSError, ValueError) as exc:  # SandboxError is an OSError
                status = LayerStatus(name, False, str(exc))
        if not status.active:
            if name in policy.required:
                raise SandboxError(f"sandbox layer {name!r} is required by the host but could not engage: "
                                   f"{status.detail}. To fix: {FIXES[name]}")
            if wanted:
                log.warning("sandbox layer %s is not active: %s", name, status.detail)
        layers.append(status)
    return SandboxReport(tuple(layers))


def _namespaces(done: list[bool]) -> str:
    namespaces.enter_namespaces()
    done.append(True)
    return (f"new user, network, mount and IPC namespaces (uid {os.getuid()} and gid {os.getgid()} mapped to "
            "themselves; no network interfaces; SysV and POSIX IPC of its own)")


def _filesystem(policy: SandboxPolicy, namespaced: list[bool]) -> str:
    if not namespaced:
        raise SandboxError("needs the 'namespaces' layer (a mount namespace of its own), which is not active")
    return mounts.build_root(policy.read_paths, policy.write_paths)


def _own_cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def _cgroup(policy: SandboxPolicy, own: str) -> str:
    if not policy.cgroup:
        raise SandboxError(policy.cgroup_unavailable or "the host did not place this worker in a cgroup")
    name = policy.cgroup.split(":", 1)[0].strip()
    if name and name not in own:
        raise SandboxError(f"the host reported cgroup {name}, but /proc/self/cgroup does not list it")
    return policy.cgroup


def _no_new_privs() -> str:
    check(prctl(PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")
    return "set: execve can't gain privileges (set-uid, file capabilities)"


def _landlock(policy: SandboxPolicy, abi: int) -> str:
    if abi == 0:
        raise SandboxError("Landlock is not available in this kernel (landlock_create_ruleset reports no ABI)")
    # The system files and devices the filesystem layer binds are granted here too (the same second fence).
    skipped = landlock.restrict((*policy.read_paths, *mounts.SYSTEM_FILES), (*policy.write_paths, *mounts.DEVICES),
                                abi)
    skipped = [p for p in skipped if p not in mounts.SYSTEM_FILES]
    parts = [f"ABI {abi}: filesystem ({len(policy.read_paths)} read-only, {len(policy.write_paths)} read-write "
             "path(s), nothing else)"]
    parts.append("TCP bind/connect denied" if abi >= 4 else "TCP not covered (needs ABI 4)")
    parts.append("signals and abstract unix sockets scoped" if abi >= 6 else "no scoping (needs ABI 6)")
    if skipped:
        parts.append(f"skipped missing path(s): {', '.join(skipped)}")
    return "; ".join(parts)


def _seccomp() -> str:
    why = seccomp.supported()
    if why:
        raise SandboxError(why)
    count = seccomp.install()
    return f"deny-list filter installed ({count} BPF instructions, {seccomp.MACHINE})"
