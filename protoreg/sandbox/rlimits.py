"""Resource limits: address space, CPU seconds, open descriptors, processes, file size."""

from __future__ import annotations

import os
import resource

from protoreg.sandbox.policy import SandboxPolicy

_NAMES = (("AS", "rlimit_as"), ("CPU", "rlimit_cpu"), ("NOFILE", "rlimit_nofile"), ("NPROC", "rlimit_nproc"),
          ("FSIZE", "disk_max"))  # no file larger than the data dir's cap (protoreg/sandbox/diskquota.py)


def apply_rlimits(policy: SandboxPolicy) -> str:
    """Lower soft and hard limits to the policy's values (never raise them); returns what was set.

    ``RLIMIT_CPU`` gets a hard limit one second above the soft one: SIGXCPU at the soft limit (a handler may
    catch it and clean up), SIGKILL one second later. ``RLIMIT_NPROC`` doesn't bind root (nor a process with
    CAP_SYS_RESOURCE or CAP_SYS_ADMIN); the seccomp layer forbids new processes for everyone instead.
    """
    parts = []
    for short, attr in _NAMES:
        value = getattr(policy, attr)
        if value is None:
            continue
        res = getattr(resource, f"RLIMIT_{short}")
        _soft, hard = resource.getrlimit(res)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        soft = new_hard
        if short == "CPU" and (hard == resource.RLIM_INFINITY or hard > soft + 1):
            new_hard = soft + 1
        resource.setrlimit(res, (soft, new_hard))
        parts.append(f"{short}={soft}")
    note = "; NPROC does not bind root, seccomp forbids new processes instead" if os.geteuid() == 0 else ""
    return (", ".join(parts) or "none set") + note
