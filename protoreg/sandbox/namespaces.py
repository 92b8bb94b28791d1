"""A fresh user + network namespace: no network interfaces but a down loopback, so no sockets reach anything.
The process keeps its uid/gid view (mapped 1:1). Must run while the process is single-threaded."""

from __future__ import annotations

import ctypes
import os

from protoreg.sandbox._libc import CLONE_NEWNET, CLONE_NEWUSER, check, unshare


def enter_user_and_net_namespace() -> None:
    uid, gid = os.getuid(), os.getgid()
    ctypes.set_errno(0)
    check(unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
