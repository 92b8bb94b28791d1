"""The whole sandbox, every layer the kernel offers, against real attacks from real child processes."""

from __future__ import annotations

import errno
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from protoreg.errors import SandboxError
from protoreg.sandbox import LAYERS, SandboxPolicy, apply_sandbox
from tests.sandbox.conftest import ALL_LAYERS, EACCES, EPERM, OFFERED, first_barrier, landlock_abi, needs

SYS_SOCKET_CONNECT = {"x86_64": (41, 42), "aarch64": (198, 203)}


def test_every_layer_the_kernel_offers_engages(sandbox):
    out = sandbox.run("")
    assert list(out["layers"]) == list(LAYERS)
    for name, layer in OFFERED.items():
        if layer.active and name != "cgroup":  # the host places workers in cgroups: tests/security checks it
            assert out["layers"][name], f"{name} is offered by this kernel but did not engage: {out['details'][name]}"


ENOENT, EROFS = errno.ENOENT, errno.EROFS


@needs("landlock")
@pytest.mark.parametrize(("layers", "denied"), [(("landlock",), {EACCES}),
                                                (ALL_LAYERS, {ENOENT, EACCES})])
def test_reading_etc_passwd_home_and_other_files_fails(sandbox, layers, denied):
    """Landlock alone answers EACCES; with the filesystem layer most of these paths don't exist at all."""
    secret = sandbox.tmp / "secret.txt"
    secret.write_text("s")
    out = sandbox.run(f"""
        attempt("passwd", lambda: open("/etc/passwd").read())
        attempt("home", lambda: os.listdir(os.path.expanduser("~")))
        attempt("secret", lambda: open({str(secret)!r}).read())
        attempt("parent_environ", lambda: open(f"/proc/{{os.getppid()}}/environ").read())
        attempt("own", lambda: open({str(sandbox.bundle / 'own.txt')!r}).read())
        import fractions  # the stdlib still imports
    """, layers=layers, expect=layers)
    assert {out["passwd"], out["home"], out["secret"], out["parent_environ"]} <= denied
    assert out["own"] == "allowed"


@needs("landlock")
@pytest.mark.parametrize(("layers", "denied"), [(("landlock",), {EACCES}), (ALL_LAYERS, {EROFS})])
def test_writing_outside_write_paths_fails_and_inside_works(sandbox, layers, denied):
    out = sandbox.run(f"""
        attempt("data", lambda: open({str(sandbox.data / 'x')!r}, "w").write("ok"))
        attempt("data_mkdir", lambda: os.mkdir({str(sandbox.data / 'sub')!r}))
        attempt("bundle", lambda: open({str(sandbox.bundle / 'x')!r}, "w").write("no"))
        attempt("overwrite_own", lambda: open({str(sandbox.bundle / 'own.txt')!r}, "w").write("no"))
        attempt("tmp", lambda: open({str(sandbox.tmp / 'escape')!r}, "w").write("no"))
    """, layers=layers, expect=layers)
    assert (out["data"], out["data_mkdir"]) == ("allowed", "allowed")
    assert {out["bundle"], out["overwrite_own"], out["tmp"]} <= denied
    assert (sandbox.data / "x").read_text() == "ok" and (sandbox.bundle / "own.txt").read_text() == "mine"
    assert not (sandbox.tmp / "escape").exists()


def test_tcp_connect_to_a_live_local_listener_fails_and_the_listener_sees_nothing(sandbox, tcp_listener):
    layer, err = first_barrier(("seccomp", EPERM), ("landlock", EACCES), ("namespaces", errno.ENETUNREACH))
    out = sandbox.run(f"""
        attempt("connect", lambda: socket.create_connection({tuple(tcp_listener.address)!r}, timeout=2))
    """, expect=(layer,))
    assert out["connect"] == err
    assert not tcp_listener.touched()


def test_binding_a_tcp_port_fails(sandbox):
    layer, err = first_barrier(("seccomp", EPERM), ("landlock", EACCES))
    out = sandbox.run("""
        attempt("bind", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).bind(("127.0.0.1", 0)))
    """, expect=(layer,))
    assert out["bind"] == err


def test_udp_sendto_fails_and_the_receiver_gets_nothing(sandbox, udp_listener):
    layer, err = first_barrier(("seccomp", EPERM), ("namespaces", errno.ENETUNREACH))
    out = sandbox.run(f"""
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", {udp_listener.address!r}))
    """, expect=(layer,))
    assert out["udp"] == err
    assert not udp_listener.touched()


def test_abstract_unix_socket_connect_to_a_host_listener_fails(sandbox, abstract_listener):
    candidates = [("seccomp", EPERM),  # no socket() at all
                  ("namespaces", errno.ECONNREFUSED)]  # abstract names are per network namespace
    if landlock_abi() >= 6:
        candidates.append(("landlock", EPERM))  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    layer, err = first_barrier(*candidates)
    out = sandbox.run(f"""
        attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect({abstract_listener.address!r}))
    """, expect=(layer,))
    assert out["abstract"] == err
    assert not abstract_listener.touched()


def test_execve_of_bin_true_fails(sandbox):
    layer, err = first_barrier(("seccomp", EPERM), ("landlock", EACCES))
    out = sandbox.run("""
        attempt("exec", lambda: os.execv("/bin/true", ["true"]))
        attempt("subprocess", lambda: __import__("subprocess").run(["/bin/true"]))
    """, expect=(layer,))
    assert out["exec"] == err and out["subprocess"] != "allowed"


@needs("seccomp")
def test_a_fork_bomb_gets_eperm_on_the_first_fork_and_threads_still_work(sandbox):
    out = sandbox.run("""
        forks, errors = 0, []
        for _ in range(20):  # capped: a failure of the defence must not take the machine down
            try:
                if os.fork() == 0:
                    os._exit(0)
                forks += 1
            except OSError as e:
                errors.append(e.errno)
        out["forks"], out["errors"] = forks, sorted(set(errors))
        results = []
        ts = [threading.Thread(target=results.append, args=(i,)) for i in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
        out["threads"] = sorted(results)
    """, expect=("seccomp",))
    assert out["forks"] == 0 and out["errors"] == [EPERM]
    assert out["threads"] == list(range(8))


def test_ptrace_and_process_vm_readv_on_the_parent_fail(sandbox):
    first_barrier(("seccomp", EPERM), ("landlock", EPERM), ("namespaces", EPERM))
    out = sandbox.run("""
        raw("ptrace", 101 if os.uname().machine == "x86_64" else 117, 16, os.getppid(), 0, 0)  # PTRACE_ATTACH
        if out["ptrace"] == "allowed":  # the defence failed: let the parent go so the test reports it
            libc.ptrace(17, os.getppid(), 0, 0); os.kill(os.getppid(), signal.SIGCONT)
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.cast(buf, ctypes.c_void_p), 8)
        attempt("vm_readv", lambda: libc.process_vm_readv(os.getppid(), iov, 1, iov, 1, 0) >= 0
                or (_ for _ in ()).throw(OSError(ctypes.get_errno(), "process_vm_readv")))
    """, via_parent=True)
    assert out["ptrace"] == EPERM and out["vm_readv"] == EPERM


def test_sigterm_to_the_parent_fails_and_the_parent_lives(sandbox):
    candidates = [("seccomp", EPERM)] + ([("landlock", EPERM)] if landlock_abi() >= 6 else [])
    layer, err = first_barrier(*candidates)
    out = sandbox.run("""
        attempt("kill_parent", lambda: os.kill(os.getppid(), signal.SIGTERM))
        attempt("kill_group", lambda: os.kill(0, signal.SIGTERM))
    """, via_parent=True, expect=(layer,))  # run() asserts the sacrificial parent exited 0
    assert (out["kill_parent"], out["kill_group"]) == (err, err)


@needs("seccomp")
@pytest.mark.skipif(platform.machine() not in SYS_SOCKET_CONNECT, reason="syscall numbers known for x86_64/aarch64")
def test_raw_socket_syscalls_through_ctypes_are_denied_too(sandbox):
    nr_socket, _ = SYS_SOCKET_CONNECT[platform.machine()]
    out = sandbox.run(f"""
        raw("socket", {nr_socket}, 2, 1, 0)  # AF_INET, SOCK_STREAM behind Python's back
        raw("socket6", {nr_socket}, 10, 2, 0)  # AF_INET6, SOCK_DGRAM
        raw("socket_netlink", {nr_socket}, 16, 3, 0)  # AF_NETLINK, SOCK_RAW
    """, expect=("seccomp",))
    assert (out["socket"], out["socket6"], out["socket_netlink"]) == (EPERM,) * 3


@needs("landlock")
@pytest.mark.skipif(platform.machine() not in SYS_SOCKET_CONNECT, reason="syscall numbers known for x86_64/aarch64")
def test_landlock_denies_a_raw_connect_on_an_inet_socket_kept_from_before_the_sandbox(sandbox, tcp_listener):
    _, nr_connect = SYS_SOCKET_CONNECT[platform.machine()]
    out = sandbox.run(f"""
        import struct
        addr = struct.pack("<H", 2) + struct.pack("!H", {tcp_listener.address[1]}) + socket.inet_aton("127.0.0.1")
        addr = ctypes.create_string_buffer(addr + bytes(8), 16)
        raw("connect", {nr_connect}, smuggled.fileno(), addr, 16)
    """, before="""
        smuggled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ARGS["policy"]["keep_fds"] = [smuggled.fileno()]
    """, expect=("landlock",))
    assert out["connect"] == EACCES  # the socket was made in the host's namespace: only Landlock stops it
    assert not tcp_listener.touched()


def test_proc_status_of_a_sandboxed_child_shows_no_new_privs_and_seccomp_filter(sandbox):
    proc = sandbox.popen("""
        print("ready", flush=True)
        sys.stdin.readline()
    """, stdin=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        status = open(f"/proc/{proc.pid}/status").read()
        own_netns = os.readlink("/proc/self/ns/net")
        child_netns = os.readlink(f"/proc/{proc.pid}/ns/net")
    finally:
        proc.communicate("go\n", timeout=10)
    assert "NoNewPrivs:\t1" in status
    if OFFERED["seccomp"].active:
        assert "Seccomp:\t2" in status and "Seccomp_filters:\t1" in status
    if OFFERED["namespaces"].active:
        assert child_netns != own_netns


@needs("landlock", "seccomp")
def test_a_thread_started_after_sandboxing_is_still_confined(sandbox, tcp_listener):
    out = sandbox.run(f"""
        def attacks():
            attempt("thread_open", lambda: open("/etc/passwd").read())
            attempt("thread_socket", lambda: socket.create_connection({tuple(tcp_listener.address)!r}, timeout=2))
            raw("thread_connect_smuggled", 42 if os.uname().machine == "x86_64" else 203, smuggled.fileno(),
                addr, 16)
            attempt("thread_fork", os.fork)
        import struct
        addr = struct.pack("<H", 2) + struct.pack("!H", {tcp_listener.address[1]}) + socket.inet_aton("127.0.0.1")
        addr = ctypes.create_string_buffer(addr + bytes(8), 16)
        t = threading.Thread(target=attacks); t.start(); t.join()
    """, before="""
        smuggled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ARGS["policy"]["keep_fds"] = [smuggled.fileno()]
    """, expect=("landlock", "seccomp"))
    assert out["thread_open"] in (EACCES, ENOENT) and out["thread_socket"] == EPERM and out["thread_fork"] == EPERM
    assert out["thread_connect_smuggled"] == EACCES
    assert not tcp_listener.touched()


def test_apply_refuses_to_run_in_a_threaded_process():
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(SandboxError, match=r"before any thread starts, but this process has 2 threads"):
            apply_sandbox(SandboxPolicy())
    finally:
        stop.set()
        t.join()


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=30)


def test_a_required_layer_the_kernel_lacks_raises_sandbox_error_naming_the_layer_and_the_fix():
    # Simulates a kernel without Landlock: the ABI query is the only thing patched; apply_sandbox runs for real.
    proc = _child("""
        from protoreg.sandbox import SandboxPolicy, apply_sandbox, landlock
        from protoreg.errors import SandboxError
        landlock.abi_version = lambda: 0
        try:
            apply_sandbox(SandboxPolicy(required=frozenset({"landlock"})))
        except SandboxError as e:
            print("refused:", e)
    """)
    assert "refused: sandbox layer 'landlock' is required by the host but could not engage: Landlock is not " \
           "available in this kernel" in proc.stdout
    assert "To fix: boot a kernel with Landlock enabled" in proc.stdout


def test_seccomp_on_an_unknown_architecture_is_reported_inactive_with_a_warning_unless_required():
    proc = _child("""
        import json, logging
        logging.basicConfig(level=logging.WARNING)
        from protoreg.sandbox import SandboxPolicy, apply_sandbox, seccomp
        from protoreg.errors import SandboxError
        real = seccomp.supported
        seccomp.supported = lambda machine="riscv64": real("riscv64")
        report = apply_sandbox(SandboxPolicy(landlock=False))
        print(json.dumps(report.to_dict()))
    """)
    layers = {layer["name"]: layer for layer in __import__("json").loads(proc.stdout)["layers"]}
    assert not layers["seccomp"]["active"] and "no seccomp syscall table for architecture riscv64" in \
        layers["seccomp"]["detail"]
    assert "sandbox layer seccomp is not active: no seccomp syscall table" in proc.stderr
    assert layers["no_new_privs"]["active"] and layers["rlimits"]["active"]
    required = _child("""
        from protoreg.sandbox import SandboxPolicy, apply_sandbox, seccomp
        seccomp.supported = lambda machine="riscv64": "no seccomp syscall table for architecture riscv64"
        apply_sandbox(SandboxPolicy(landlock=False, required=frozenset({"seccomp"})))
    """)
    assert required.returncode == 1 and "SandboxError: sandbox layer 'seccomp' is required" in required.stderr


def test_a_required_layer_disabled_in_the_same_policy_is_refused():
    proc = _child("""
        from protoreg.sandbox import SandboxPolicy, apply_sandbox
        apply_sandbox(SandboxPolicy(network_namespace=False, required=frozenset({"namespaces"})))
    """)
    assert "sandbox layer 'namespaces' is required by the host but could not engage: disabled by the host " \
           "configuration" in proc.stderr
