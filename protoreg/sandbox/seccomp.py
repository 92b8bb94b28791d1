"""A seccomp-BPF deny-list, assembled by hand and installed through prctl (no libseccomp needed).

Verdicts (everything else is allowed):

* EPERM: ``socket`` for every family (the worker keeps only its inherited channel; ``socketpair`` of AF_UNIX stays
  for asyncio's self-pipe), other socketpairs; execve/execveat; ptrace, process_vm_readv/writev, pidfd_getfd,
  pidfd_open, kcmp, process_madvise, process_mrelease, migrate_pages, move_pages; mount, umount2, the new mount API
  (open_tree, move_mount, fsopen, fsmount, fspick, mount_setattr, open_tree_attr), unshare, setns, chroot,
  pivot_root; bpf, perf_event_open; keyctl/add_key/request_key; userfaultfd; io_uring_*; module loading, kexec,
  reboot, swapon/off, acct, quotactl, syslog, open_by_handle_at, name_to_handle_at; file metadata changes (chmod,
  fchmod, fchmodat, fchmodat2, chown, fchown, lchown, fchownat, utime, utimes, futimesat, utimensat, the set/remove
  xattr calls) and mknod/mknodat; watches (inotify_init/init1/add_watch, fanotify_init/mark); System V IPC (shm*,
  sem*, msg*) and POSIX message queues (mq_*); memfd_create and memfd_secret (memory outside the address-space
  limit); setpriority and ioprio_set; fork/vfork and clone without CLONE_THREAD (threads work, processes don't: the
  fork-bomb defence that also holds for root, whom RLIMIT_NPROC ignores); kill, tkill, tgkill, rt_sigqueueinfo and
  rt_tgsigqueueinfo aimed at any pid but our own, and pidfd_send_signal; sched_setaffinity, sched_setscheduler,
  sched_setparam and sched_setattr aimed at any pid but 0 or our own (the kernel lets a process re-schedule every
  process of the same owner, and the worker's user namespace maps it to the host user); setrlimit, and prlimit64
  with a new limit (so the rlimits layer can't be undone); ioctl TIOCSTI/TIOCLINUX (typing into the controlling
  terminal).
* ENOSYS: clone3, whose flags live in memory BPF can't read; glibc then falls back to clone.
* Kill the process: a foreign architecture, or an x32 syscall on x86_64.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from protoreg.sandbox._libc import MACHINE, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, check, prctl_ptr

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
AF_UNIX = 1
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian: low word first)
OFF_NR, OFF_ARCH = 0, 4


def arg_lo(n: int) -> int:
    return 16 + 8 * n


def arg_hi(n: int) -> int:
    return 20 + 8 * n


_DENY = ("execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "mount",
         "umount2", "open_tree", "move_mount", "fsopen", "fsmount", "fspick", "unshare", "setns", "pivot_root",
         "chroot", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup",
         "io_uring_enter", "io_uring_register", "init_module", "finit_module", "delete_module", "kexec_load",
         "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "open_by_handle_at", "fork", "vfork",
         "pidfd_send_signal", "setrlimit", "socket", "pidfd_open", "kcmp", "process_madvise", "process_mrelease",
         "migrate_pages", "move_pages", "mount_setattr", "open_tree_attr", "quotactl", "quotactl_fd", "syslog",
         "name_to_handle_at", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
         "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
         "removexattr", "lremovexattr", "fremovexattr", "removexattrat", "mknod", "mknodat", "inotify_init",
         "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark", "shmget", "shmat", "shmctl", "shmdt",
         "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink",
         "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr", "memfd_create", "memfd_secret",
         "setpriority", "ioprio_set")
#: Scheduling syscalls whose first argument is the target pid (0: the caller): allowed only towards ourselves.
_SCHED_OWN_PID = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")
#: Signal syscalls whose first argument is the target (thread group) id: allowed only towards ourselves.
_SIGNAL_OWN_PID = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")

#: (AUDIT_ARCH_*, syscall numbers) per machine; checked against the kernel headers by the tests where installed.
ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "socket": 41, "socketpair": 53, "execve": 59, "execveat": 322, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "pidfd_getfd": 438, "mount": 165, "umount2": 166, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsmount": 432, "fspick": 433, "unshare": 272, "setns": 308,
        "pivot_root": 155, "chroot": 161, "bpf": 321, "perf_event_open": 298, "keyctl": 250, "add_key": 248,
        "request_key": 249, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
        "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "open_by_handle_at": 304, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200,
        "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424,
        "setrlimit": 160, "prlimit64": 302, "ioctl": 16, "pidfd_open": 434, "kcmp": 312, "process_madvise": 440,
        "process_mrelease": 448, "migrate_pages": 256, "move_pages": 279, "mount_setattr": 442,
        "open_tree_attr": 467, "quotactl": 179, "quotactl_fd": 443, "syslog": 103, "name_to_handle_at": 303,
        "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94,
        "fchownat": 260, "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188,
        "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463, "removexattr": 197, "lremovexattr": 198,
        "fremovexattr": 199, "removexattrat": 466, "mknod": 133, "mknodat": 259, "inotify_init": 253,
        "inotify_init1": 294, "inotify_add_watch": 254, "fanotify_init": 300, "fanotify_mark": 301, "shmget": 29,
        "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semtimedop": 220, "semctl": 66,
        "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "mq_open": 240, "mq_unlink": 241,
        "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245, "memfd_create": 319,
        "memfd_secret": 447, "setpriority": 141, "ioprio_set": 251, "sched_setaffinity": 203,
        "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314}),
    "aarch64": (0xC00000B7, {  # the generic table: no fork/vfork syscalls at all
        "socket": 198, "socketpair": 199, "execve": 221, "execveat": 281, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "pidfd_getfd": 438, "mount": 40, "umount2": 39, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsmount": 432, "fspick": 433, "unshare": 97, "setns": 268,
        "pivot_root": 41, "chroot": 51, "bpf": 280, "perf_event_open": 241, "keyctl": 219, "add_key": 217,
        "request_key": 218, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
        "kexec_file_load": 294, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "open_by_handle_at": 265, "clone": 220, "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "pidfd_send_signal": 424, "setrlimit": 164,
        "prlimit64": 261, "ioctl": 29, "pidfd_open": 434, "kcmp": 272, "process_madvise": 440,
        "process_mrelease": 448, "migrate_pages": 238, "move_pages": 239, "mount_setattr": 442,
        "open_tree_attr": 467, "quotactl": 60, "quotactl_fd": 443, "syslog": 116, "name_to_handle_at": 264,
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchown": 55, "fchownat": 54, "utimensat": 88,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463, "removexattr": 14, "lremovexattr": 15,
        "fremovexattr": 16, "removexattrat": 466, "mknodat": 33, "inotify_init1": 26, "inotify_add_watch": 27,
        "fanotify_init": 262, "fanotify_mark": 263, "shmget": 194, "shmctl": 195, "shmat": 196, "shmdt": 197,
        "semget": 190, "semctl": 191, "semtimedop": 192, "semop": 193, "msgget": 186, "msgctl": 187, "msgrcv": 188,
        "msgsnd": 189, "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
        "mq_notify": 184, "mq_getsetattr": 185, "memfd_create": 279, "memfd_secret": 447, "setpriority": 140,
        "ioprio_set": 30, "sched_setaffinity": 122, "sched_setscheduler": 119, "sched_setparam": 118,
        "sched_setattr": 274}),
}


def supported(machine: str = MACHINE) -> str | None:
    """None when this architecture has a syscall table here, else why the filter can't be installed."""
    if machine not in ARCHES:
        return (f"no seccomp syscall table for architecture {machine} (supported: {', '.join(ARCHES)}); the filter "
                f"is not installed rather than guessing syscall numbers")
    return None


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _ret(value: int) -> bytes:
    return _ins(RET_K, value)


def build_filter(machine: str = MACHINE, pid: int | None = None) -> bytes:
    """The BPF program for ``machine``; ``pid`` is the only process signals may target (default: ours)."""
    arch, table = ARCHES[machine]
    own = os.getpid() if pid is None else pid
    eperm, enosys = RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
    prog = [_ins(LD_W_ABS, OFF_ARCH), _ins(JEQ_K, arch, 1, 0), _ret(RET_KILL_PROCESS), _ins(LD_W_ABS, OFF_NR)]
    if machine == "x86_64":
        prog += [_ins(JGE_K, X32_SYSCALL_BIT, 0, 1), _ret(RET_KILL_PROCESS)]
    for name in _DENY:
        if name in table:
            prog += [_ins(JEQ_K, table[name], 0, 1), _ret(eperm)]
    prog += [_ins(JEQ_K, table["clone3"], 0, 1), _ret(enosys)]
    for name in ("socketpair",):  # AF_UNIX only
        prog += [_ins(JEQ_K, table[name], 0, 4), _ins(LD_W_ABS, arg_lo(0)), _ins(JEQ_K, AF_UNIX, 0, 1),
                 _ret(RET_ALLOW), _ret(eperm)]
    # clone: threads only. The flags are the first argument on x86_64 and aarch64 alike.
    prog += [_ins(JEQ_K, table["clone"], 0, 4), _ins(LD_W_ABS, arg_lo(0)), _ins(JSET_K, CLONE_THREAD, 0, 1),
             _ret(RET_ALLOW), _ret(eperm)]
    for name in _SIGNAL_OWN_PID:  # the kernel reads pid_t: the low 32 bits of the first argument
        prog += [_ins(JEQ_K, table[name], 0, 4), _ins(LD_W_ABS, arg_lo(0)), _ins(JEQ_K, own, 0, 1),
                 _ret(RET_ALLOW), _ret(eperm)]
    for name in _SCHED_OWN_PID:  # pid_t again; 0 means the calling thread
        prog += [_ins(JEQ_K, table[name], 0, 5), _ins(LD_W_ABS, arg_lo(0)), _ins(JEQ_K, 0, 2, 0),
                 _ins(JEQ_K, own, 1, 0), _ret(eperm), _ret(RET_ALLOW)]
    # ioctl: the request is an unsigned int in the kernel, so the low word decides.
    prog += [_ins(JEQ_K, table["ioctl"], 0, 5), _ins(LD_W_ABS, arg_lo(1)), _ins(JEQ_K, TIOCSTI, 2, 0),
             _ins(JEQ_K, TIOCLINUX, 1, 0), _ret(RET_ALLOW), _ret(eperm)]
    # prlimit64(pid, resource, new, old): reading limits is fine, a new limit (a non-NULL pointer) is not.
    prog += [_ins(JEQ_K, table["prlimit64"], 0, 6), _ins(LD_W_ABS, arg_lo(2)), _ins(JEQ_K, 0, 0, 3),
             _ins(LD_W_ABS, arg_hi(2)), _ins(JEQ_K, 0, 0, 1), _ret(RET_ALLOW), _ret(eperm)]
    prog.append(_ret(RET_ALLOW))
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> int:
    """Install the filter on the calling thread (needs no_new_privs first). Irreversible; returns its length."""
    code = build_filter()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    check(prctl_ptr(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog)), "prctl(PR_SET_SECCOMP)")
    return len(code) // 8
