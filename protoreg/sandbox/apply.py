"""apply_sandbox (in the worker) and probe (anywhere, without restricting the caller)."""

from __future__ import annotations

import logging
import os
import resource
import threading
from collections.abc import Callable

from protoreg.errors import SandboxError
from protoreg.sandbox import landlock, namespaces, seccomp
from protoreg.sandbox._libc import PR_GET_NO_NEW_PRIVS, PR_SET_NO_NEW_PRIVS, check, prctl
from protoreg.sandbox.policy import LAYERS, LayerStatus, SandboxPolicy, SandboxReport

log = logging.getLogger("protoreg.sandbox")

_FIXES = {
    "userns+netns": "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or "
                    "user.max_user_namespaces > 0), or drop 'userns+netns' from the required layers",
    "landlock": "boot a kernel with Landlock enabled (CONFIG_SECURITY_LANDLOCK and 'landlock' in lsm=), or drop "
                "'landlock' from the required layers",
    "seccomp": "use a kernel with CONFIG_SECCOMP_FILTER on x86_64 or aarch64, or drop 'seccomp' from the required "
               "layers",
}


def _close_fds(keep: set[int]) -> str:
    closed = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
                closed += 1
            except OSError:
                pass
    return f"kept 0-2 and {sorted(keep)}; closed {closed}"


def _rlimits(policy: SandboxPolicy) -> str:
    parts = []
    for name, value in (("AS", policy.rlimit_as), ("CPU", policy.rlimit_cpu), ("NOFILE", policy.rlimit_nofile),
                        ("NPROC", policy.rlimit_nproc)):
        if value is None:
            continue
        res = getattr(resource, f"RLIMIT_{name}")
        _soft, hard = resource.getrlimit(res)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        soft = min(value, new_hard)
        if name == "CPU":  # SIGXCPU at the soft limit, SIGKILL one second later
            new_hard = soft + 1 if hard == resource.RLIM_INFINITY or hard > soft + 1 else new_hard
        resource.setrlimit(res, (soft, new_hard))
        parts.append(f"{name}={value}")
    note = " (NPROC does not bind root; seccomp forbids new processes)" if os.geteuid() == 0 else ""
    return ", ".join(parts) + note


def apply_sandbox(policy: SandboxPolicy) -> SandboxReport:
    """Restrict the calling process, irreversibly. Call while single-threaded, before running handler code."""
    if threading.active_count() > 1:
        raise SandboxError("apply_sandbox must run before any thread starts: Landlock and seccomp bind only the "
                           "calling thread, and user namespaces can't be entered by a threaded process")
    unknown = set(policy.required) - set(LAYERS)
    if unknown:
        raise SandboxError(f"unknown sandbox layer(s) required: {', '.join(sorted(unknown))}. Known layers: "
                           f"{', '.join(LAYERS)}")
    abi = landlock.abi_version()
    steps: list[tuple[str, bool, Callable[[], str]]] = [
        ("fds", True, lambda: _close_fds(set(policy.keep_fds))),
        ("userns+netns", policy.network_namespace,
         lambda: (namespaces.enter_user_and_net_namespace(), "new user and network namespace")[1]),
        ("rlimits", True, lambda: _rlimits(policy)),
        ("no_new_privs", True, lambda: (check(prctl(PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)"),
                                        "set")[1]),
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
            except (OSError, SandboxError) as exc:
                status = LayerStatus(name, False, str(exc))
        if not status.active:
            if name in policy.required:
                raise SandboxError(f"sandbox layer {name!r} is required by the host but could not engage: "
                                   f"{status.detail}. {_FIXES.get(name, 'Check the kernel and host settings')}")
            if wanted:
                log.warning("sandbox layer %s is not active: %s", name, status.detail)
        layers.append(status)
    return SandboxReport(tuple(layers))


def _landlock(policy: SandboxPolicy, abi: int) -> str:
    if abi == 0:
        raise SandboxError("Landlock is not available in this kernel (landlock_create_ruleset failed)")
    got = landlock.restrict(policy.read_paths, policy.write_paths, abi)
    extras = [k for k in ("net", "scope") if got[k]]
    return f"ABI {abi}: filesystem" + "".join(f", {e}" for e in extras) + \
        ("" if abi >= 6 else " (signals/abstract sockets need ABI 6)")


def _seccomp() -> str:
    why = seccomp.supported()
    if why:
        raise SandboxError(why)
    seccomp.install()
    return "deny-list filter installed"


def probe() -> SandboxReport:
    """What this machine offers, without restricting the caller (namespaces are tried in a forked child)."""
    abi = landlock.abi_version()
    layers = [LayerStatus("fds", True, "always available"), _probe_userns(),
              LayerStatus("rlimits", True, "always available"),
              LayerStatus("no_new_privs", prctl(PR_GET_NO_NEW_PRIVS) >= 0, "prctl(PR_SET_NO_NEW_PRIVS)"),
              LayerStatus("landlock", abi > 0, f"ABI {abi}" + ("" if abi else ": not available in this kernel")),
              LayerStatus("seccomp", seccomp.supported() is None and _seccomp_in_kernel(),
                          seccomp.supported() or ("seccomp filter mode" if _seccomp_in_kernel()
                                                  else "the kernel has no seccomp"))]
    return SandboxReport(tuple(layers))


def _seccomp_in_kernel() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def _probe_userns() -> LayerStatus:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            namespaces.enter_user_and_net_namespace()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    ok = os.waitstatus_to_exitcode(status) == 0
    return LayerStatus("userns+netns", ok, "unshare(CLONE_NEWUSER|CLONE_NEWNET) works" if ok else
                       "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: unprivileged user namespaces are disabled")
