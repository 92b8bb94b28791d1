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
