"""A seccomp-BPF deny-list, assembled by hand and installed through prctl (no libseccomp needed).

EPERM for: sockets of any family but AF_UNIX, execve/execveat, ptrace, process_vm_readv/writev, mount and friends,
unshare, setns, chroot, pivot_root, bpf, perf_event_open, keyctl/add_key/request_key, userfaultfd, io_uring_*,
fork/vfork, and clone without CLONE_THREAD (threads work, processes don't: the fork-bomb defence that also holds for
root, whom RLIMIT_NPROC ignores). ENOSYS for clone3, so glibc falls back to clone, whose flags BPF can inspect.
A foreign architecture or an x32 syscall kills the process.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from protoreg.sandbox._libc import MACHINE, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, check, prctl_ptr

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
AF_UNIX = 1
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16

ARCHES = {
    "x86_64": (0xC000003E, {
        "socket": 41, "socketpair": 53, "execve": 59, "execveat": 322, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155,
        "chroot": 161, "bpf": 321, "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "fork": 57,
        "vfork": 58, "clone": 56, "clone3": 435, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsmount": 432, "fspick": 433}),
    "aarch64": (0xC00000B7, {
        "socket": 198, "socketpair": 199, "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "pivot_root": 41,
        "chroot": 51, "bpf": 280, "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218,
        "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "clone": 220, "clone3": 435, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432,
        "fspick": 433}),
}
_SPECIAL = ("socket", "socketpair", "clone", "clone3")


def supported() -> str | None:
    """None when this architecture is supported, else why not."""
    if MACHINE not in ARCHES:
        return f"no seccomp syscall table for architecture {MACHINE} (supported: {', '.join(ARCHES)})"
    return None


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def build_filter(machine: str = MACHINE) -> bytes:
    arch, table = ARCHES[machine]
    eperm, enosys = RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
    prog = [_ins(_LD_W_ABS, 0, 0, _OFF_ARCH), _ins(_JEQ_K, 1, 0, arch), _ins(_RET_K, 0, 0, RET_KILL_PROCESS),
            _ins(_LD_W_ABS, 0, 0, _OFF_NR)]
    if machine == "x86_64":
        prog += [_ins(_JGE_K, 0, 1, X32_SYSCALL_BIT), _ins(_RET_K, 0, 0, RET_KILL_PROCESS)]
    for name, nr in table.items():
        if name not in _SPECIAL:
            prog += [_ins(_JEQ_K, 0, 1, nr), _ins(_RET_K, 0, 0, eperm)]
    prog += [_ins(_JEQ_K, 0, 1, table["clone3"]), _ins(_RET_K, 0, 0, enosys)]
    for name in ("socket", "socketpair"):  # only AF_UNIX
        prog += [_ins(_JEQ_K, 0, 4, table[name]), _ins(_LD_W_ABS, 0, 0, _OFF_ARG0), _ins(_JEQ_K, 0, 1, AF_UNIX),
                 _ins(_RET_K, 0, 0, RET_ALLOW), _ins(_RET_K, 0, 0, eperm)]
    # clone: threads only (CLONE_THREAD set); the flags are the first argument on both architectures.
    prog += [_ins(_JEQ_K, 0, 4, table["clone"]), _ins(_LD_W_ABS, 0, 0, _OFF_ARG0),
             _ins(_JSET_K, 0, 1, CLONE_THREAD), _ins(_RET_K, 0, 0, RET_ALLOW), _ins(_RET_K, 0, 0, eperm)]
    prog.append(_ins(_RET_K, 0, 0, RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Install the filter on the calling thread (needs no_new_privs first). Irreversible."""
    code = build_filter()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    check(prctl_ptr(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog)), "prctl(PR_SET_SECCOMP)")
