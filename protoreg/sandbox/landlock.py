"""Landlock via ctypes: filesystem rules, TCP bind/connect denial (ABI >= 4), signal and abstract-socket scoping
(ABI >= 6). Rights a kernel's ABI doesn't know are masked off, as the kernel documentation's best-effort example
does."""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable

from protoreg.sandbox._libc import (
    SYS_LANDLOCK_ADD_RULE,
    SYS_LANDLOCK_CREATE_RULESET,
    SYS_LANDLOCK_RESTRICT_SELF,
    check,
    syscall,
)

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13        # ABI 2
FS_TRUNCATE = 1 << 14     # ABI 3
FS_IOCTL_DEV = 1 << 15    # ABI 5
NET_BIND_TCP = 1 << 0     # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

_FS_ABI1 = (1 << 13) - 1
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
#: Read-only paths: read files and list directories. No EXECUTE: a handler never needs to run a program (and
#: seccomp refuses execve anyway), so a kernel without seccomp still can't exec /usr/bin/anything.
READ_RIGHTS = FS_READ_FILE | FS_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when Landlock is unavailable or disabled)."""
    v = syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, v)


def fs_rights(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def net_rights(abi: int) -> int:
    return (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0


def scopes(abi: int) -> int:
    return (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0


def restrict(read_paths: Iterable[str], write_paths: Iterable[str], abi: int) -> list[str]:
    """Install a ruleset on the calling thread (inherited by threads and children created later).

    Every right this ABI knows is handled, so whatever no rule grants is denied: files outside the paths, TCP bind
    and connect (no port rules at all), signals and abstract unix sockets leaving the domain. Returns the paths
    that were skipped because they don't exist (they grant nothing).
    """
    handled_fs = fs_rights(abi)
    attr = _RulesetAttr(handled_fs, net_rights(abi), scopes(abi))
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # older kernels reject fields they don't know
    fd = check(syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
               "landlock_create_ruleset")
    skipped: list[str] = []
    try:
        for paths, rights in ((read_paths, READ_RIGHTS), (write_paths, handled_fs)):
            for path in paths:
                if not _add_path(fd, path, rights & handled_fs):
                    skipped.append(path)
        check(syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(fd)
    return skipped


def _add_path(ruleset_fd: int, path: str, rights: int) -> bool:
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return False  # a path that does not exist grants nothing
    try:
        if not stat.S_ISDIR(os.fstat(pfd).st_mode):  # the opened inode, not the name again
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(rights, pfd)
        check(syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(RULE_PATH_BENEATH),
                      ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule({path})")
    finally:
        os.close(pfd)
    return True
