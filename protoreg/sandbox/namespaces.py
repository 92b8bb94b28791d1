"""Fresh namespaces for the worker: user, network, mount and IPC.

- **network**: no interfaces but a down loopback, so no socket reaches anything;
- **IPC**: its own System V shared memory, semaphores and message queues and its own POSIX message queues, all
  destroyed with the namespace when the worker exits (the host's segments are invisible and can't be attached);
- **mount**: the worker's own mount table, which the ``filesystem`` layer then replaces with a minimal root;
- **user**: owns the other three (an unprivileged process may create them this way), with the process's uid and
  gid mapped 1:1 and ``setgroups`` denied.

Must run while the process is single-threaded.
"""

from __future__ import annotations

import ctypes
import os

from protoreg.sandbox._libc import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, check, unshare

FLAGS = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC


def enter_namespaces() -> None:
    uid, gid = os.getuid(), os.getgid()
    ctypes.set_errno(0)
    check(unshare(FLAGS), "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS|CLONE_NEWIPC)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")

