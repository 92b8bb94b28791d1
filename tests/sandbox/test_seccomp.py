"""The seccomp-BPF deny-list: the program's verdicts (run through a small BPF interpreter), its syscall tables
against the kernel headers, and the filter alone (no namespace, no Landlock) in real child processes."""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from protoreg.sandbox.seccomp import (
    ARCHES,
    CLONE_THREAD,
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_PROCESS,
    TIOCSTI,
    X32_SYSCALL_BIT,
    build_filter,
    supported,
)
from tests.sandbox.conftest import EPERM, needs

EPERM_VERDICT, ENOSYS_VERDICT = RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
PID = 4242


def run_bpf(code: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Evaluate a classic BPF program over a struct seccomp_data, as the kernel would."""
    full = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(a & 0xFFFFFFFFFFFFFFFF for a in full))
    prog = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = prog[pc]
        if op == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op in (0x15, 0x35, 0x45):
            taken = acc == k if op == 0x15 else acc >= k if op == 0x35 else bool(acc & k)
            pc += 1 + (jt if taken else jf)
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {op:#x}")


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_each_denied_syscall_gets_eperm_and_clone3_enosys(machine):
    arch, table = ARCHES[machine]
    code = build_filter(machine, pid=PID)
    for name in ("execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2",
                 "unshare", "setns", "pivot_root", "chroot", "bpf", "perf_event_open", "keyctl", "add_key",
                 "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
                 "init_module", "finit_module", "kexec_load", "reboot", "open_by_handle_at", "setrlimit",
                 "pidfd_send_signal", "pidfd_getfd", "fork", "vfork", "ioprio_set"):
        if name in table:
            assert run_bpf(code, table[name], arch) == EPERM_VERDICT, name
    assert run_bpf(code, table["clone3"], arch) == ENOSYS_VERDICT
    assert run_bpf(code, 0, arch) == RET_ALLOW  # read (x86_64) / io_setup (aarch64): untouched


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_argument_checks_allow_threads_unix_socketpairs_own_signals_and_reading_limits_only(machine):
    arch, t = ARCHES[machine]
    code = build_filter(machine, pid=PID)
    verdict = {
        ("socket AF_UNIX", run_bpf(code, t["socket"], arch, (1, 1, 0))): EPERM_VERDICT,  # pathname sockets too
        ("socket AF_INET", run_bpf(code, t["socket"], arch, (2, 1, 0))): EPERM_VERDICT,
        ("socket AF_INET6", run_bpf(code, t["socket"], arch, (10, 2, 0))): EPERM_VERDICT,
        ("socketpair AF_UNIX", run_bpf(code, t["socketpair"], arch, (1, 1, 0))): RET_ALLOW,
        ("socketpair AF_INET", run_bpf(code, t["socketpair"], arch, (2, 1, 0))): EPERM_VERDICT,
        ("clone thread", run_bpf(code, t["clone"], arch, (0x3D0F00 | CLONE_THREAD,))): RET_ALLOW,
        ("clone process", run_bpf(code, t["clone"], arch, (0x1200011,))): EPERM_VERDICT,
        ("kill self", run_bpf(code, t["kill"], arch, (PID, 15))): RET_ALLOW,
        ("kill other", run_bpf(code, t["kill"], arch, (1, 15))): EPERM_VERDICT,
        ("kill group", run_bpf(code, t["kill"], arch, (0, 15))): EPERM_VERDICT,
        ("kill all", run_bpf(code, t["kill"], arch, (-1, 9))): EPERM_VERDICT,
        ("kill -pid", run_bpf(code, t["kill"], arch, (-PID, 9))): EPERM_VERDICT,
        ("tgkill self", run_bpf(code, t["tgkill"], arch, (PID, PID + 1, 10))): RET_ALLOW,
        ("tgkill other", run_bpf(code, t["tgkill"], arch, (PID + 1, PID + 1, 10))): EPERM_VERDICT,
        ("rt_sigqueueinfo other", run_bpf(code, t["rt_sigqueueinfo"], arch, (7, 10, 0))): EPERM_VERDICT,
        ("sched_setaffinity self", run_bpf(code, t["sched_setaffinity"], arch, (0, 8, 0))): RET_ALLOW,
        ("sched_setaffinity own pid", run_bpf(code, t["sched_setaffinity"], arch, (PID, 8, 0))): RET_ALLOW,
        ("sched_setaffinity other", run_bpf(code, t["sched_setaffinity"], arch, (PID + 1, 8, 0))): EPERM_VERDICT,
        ("sched_setscheduler other", run_bpf(code, t["sched_setscheduler"], arch, (1, 5, 0))): EPERM_VERDICT,
        ("sched_setparam other", run_bpf(code, t["sched_setparam"], arch, (1, 0))): EPERM_VERDICT,
        ("sched_setattr other", run_bpf(code, t["sched_setattr"], arch, (1, 0, 0))): EPERM_VERDICT,
        ("sched_setattr self", run_bpf(code, t["sched_setattr"], arch, (0, 0, 0))): RET_ALLOW,
        ("ioctl TIOCSTI", run_bpf(code, t["ioctl"], arch, (0, TIOCSTI, 0))): EPERM_VERDICT,
        ("ioctl FIONREAD", run_bpf(code, t["ioctl"], arch, (3, 0x541B, 0))): RET_ALLOW,
        ("prlimit64 read", run_bpf(code, t["prlimit64"], arch, (0, 7, 0, 0x7FFF0000))): RET_ALLOW,
        ("prlimit64 set", run_bpf(code, t["prlimit64"], arch, (0, 7, 0x7FFF0000, 0))): EPERM_VERDICT,
        ("prlimit64 set high", run_bpf(code, t["prlimit64"], arch, (0, 7, 1 << 40, 0))): EPERM_VERDICT,
    }
    assert {what: got for (what, got) in verdict} == {what: want for (what, _), want in verdict.items()}


def test_a_foreign_architecture_or_an_x32_syscall_kills_the_process():
    arch, _ = ARCHES["x86_64"]
    code = build_filter("x86_64", pid=PID)
    assert run_bpf(code, 0, 0x40000003) == RET_KILL_PROCESS  # AUDIT_ARCH_I386: the 32-bit syscall table
    assert run_bpf(code, X32_SYSCALL_BIT | 0, arch) == RET_KILL_PROCESS
    assert run_bpf(build_filter("aarch64", pid=PID), 63, arch) == RET_KILL_PROCESS


def test_an_unsupported_architecture_gets_a_reason_instead_of_a_guessed_filter():
    assert supported("x86_64") is None and supported("aarch64") is None
    why = supported("riscv64")
    assert why is not None and "riscv64" in why and "not installed" in why


def _header_numbers(path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", line)
        if m and m.group(1) not in found:
            found[m.group(1)] = int(m.group(2))
    return found


@pytest.mark.parametrize(("machine", "header"), [
    ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    ("aarch64", "/usr/include/asm-generic/unistd.h"),
])
def test_syscall_tables_match_the_installed_kernel_headers(machine, header):
    path = Path(header)
    if not path.exists():
        pytest.skip(f"kernel header {header} is not installed here")
    numbers = _header_numbers(path)
    _, table = ARCHES[machine]
    assert {name: numbers[name] for name in table if name in numbers} == \
        {name: nr for name, nr in table.items() if name in numbers}
    # Syscalls newer than the installed headers (Linux 6.6 and later): their numbers come from the kernel tree.
    assert set(table) - set(numbers) <= {"fchmodat2", "setxattrat", "removexattrat", "open_tree_attr"}


@needs("seccomp")
def test_the_filter_alone_denies_sockets_exec_fork_ptrace_metadata_ipc_and_namespace_escapes(sandbox):
    out = sandbox.run("""
        x86 = os.uname().machine == "x86_64"
        def raw_inotify():
            if libc.syscall(294 if x86 else 26, 0) < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
        def raw_shmget():
            if libc.syscall(29 if x86 else 194, 0, 4096, 0o1600) < 0:  # IPC_PRIVATE, IPC_CREAT|0600
                raise OSError(ctypes.get_errno(), "shmget")
        attempt("tcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        attempt("udp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
        attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
        attempt("chmod", lambda: os.chmod(sys.executable, 0o4755))
        attempt("inotify", lambda: raw_inotify())
        attempt("shmget", lambda: raw_shmget())
        attempt("memfd", lambda: os.memfd_create("x"))
        attempt("unix_pair", lambda: [s.close() for s in socket.socketpair()])
        attempt("exec", lambda: os.execv("/bin/true", ["true"]))
        attempt("fork", os.fork)
        x86 = os.uname().machine == "x86_64"
        raw("unshare", 272 if x86 else 97, 0x10000000)  # CLONE_NEWUSER
        raw("mount", 165 if x86 else 40, b"none", b"/tmp", b"tmpfs", 0, None)
        raw("bpf", 321 if x86 else 280, 0, None, 0)
        raw("io_uring_setup", 425, 8, None)
        lowered = (ctypes.c_ulong * 2)(64, 64)  # even lowering is refused: no rlimit changes after the sandbox
        raw("setrlimit", 160 if x86 else 164, 7, lowered)
        import resource
        attempt("read_nofile", lambda: resource.getrlimit(resource.RLIMIT_NOFILE))
        signal.signal(signal.SIGUSR1, lambda *a: out.__setitem__("got_usr1", True))
        attempt("signal_self", lambda: os.kill(os.getpid(), signal.SIGUSR1))
        attempt("signal_thread", lambda: signal.pthread_kill(threading.get_ident(), 0))
    """, layers=("seccomp",), expect=("seccomp",))
    assert (out["tcp"], out["udp6"], out["netlink"], out["exec"], out["fork"], out["unshare"], out["mount"],
            out["bpf"], out["io_uring_setup"], out["setrlimit"], out["unix"], out["chmod"], out["inotify"],
            out["shmget"], out["memfd"]) == (EPERM,) * 15
    assert (out["unix_pair"], out["read_nofile"], out["signal_self"], out["signal_thread"]) == ("allowed",) * 4
    assert out["got_usr1"] is True


@needs("seccomp")
def test_the_filter_alone_stops_sigterm_to_a_bystander_process(sandbox, bystander):
    out = sandbox.run(f"""
        attempt("kill", lambda: os.kill({bystander.pid}, signal.SIGTERM))
    """, layers=("seccomp",), expect=("seccomp",))
    assert out["kill"] == EPERM and bystander.poll() is None
