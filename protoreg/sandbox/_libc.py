"""The few libc entry points the sandbox needs, through ctypes (no compiled extension to build)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform


def _load_libc() -> ctypes.CDLL:
    try:  # the usual glibc soname: avoids find_library, which runs ldconfig in a subprocess
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_libc = _load_libc()
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.unshare.argtypes = [ctypes.c_int]

MACHINE = platform.machine()
# Landlock syscall numbers are the same on x86_64 and aarch64 (the generic table).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def syscall(number: int, *args: object) -> int:
    return int(_libc.syscall(ctypes.c_long(number), *args))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return int(_libc.prctl(option, arg2, arg3, arg4, arg5))


def prctl_ptr(option: int, arg2: int, pointer: object) -> int:
    fn = _libc.prctl
    return int(ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, use_errno=True)(
        ctypes.cast(fn, ctypes.c_void_p).value)(option, arg2, ctypes.cast(pointer, ctypes.c_void_p)))


def unshare(flags: int) -> int:
    return int(_libc.unshare(flags))

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000

# The mount API. open_tree, move_mount and mount_setattr have the same numbers on x86_64 and aarch64.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(MACHINE, -1)
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> int:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    return int(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)))


def umount2(target: str, flags: int) -> int:
    return int(_libc.umount2(os.fsencode(target), flags))
