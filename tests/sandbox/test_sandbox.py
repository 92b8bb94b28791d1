"""Sandbox layers in real child processes: each layer claims what it does, and probe() decides skip vs fail."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from protoreg.errors import SandboxError
from protoreg.sandbox import SandboxPolicy, apply_sandbox, probe
from protoreg.sandbox.seccomp import build_filter

OFFERED = {layer.name: layer for layer in probe().layers}


def needs(*layers: str) -> pytest.MarkDecorator:
    missing = [f"{n}: {OFFERED[n].detail}" for n in layers if not OFFERED[n].active]
    return pytest.mark.skipif(bool(missing), reason="sandbox layer unavailable here: " + "; ".join(missing))


def run_child(code: str, tmp_path) -> dict:
    """Run ``code`` in a fresh Python that sandboxes itself first; it prints one JSON object."""
    prelude = textwrap.dedent(f"""
        import json, os, socket, sys, threading
        from protoreg.sandbox import SandboxPolicy, apply_sandbox, default_read_paths
        report = apply_sandbox(SandboxPolicy(read_paths=default_read_paths({str(tmp_path / 'bundle')!r}),
                                             write_paths=({str(tmp_path / 'data')!r},)))
        out = {{"layers": {{l.name: l.active for l in report.layers}}}}
        def attempt(name, fn):
            try:
                fn()
                out[name] = "allowed"
            except OSError as e:
                out[name] = e.errno
    """)
    (tmp_path / "bundle").mkdir(exist_ok=True)
    (tmp_path / "bundle" / "own.txt").write_text("mine")
    (tmp_path / "data").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code) + "\nprint(json.dumps(out))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_layer_the_kernel_offers_engages(tmp_path):
    out = run_child("", tmp_path)
    for name, layer in OFFERED.items():
        if layer.active:
            assert out["layers"][name], f"{name} is offered by this kernel but did not engage"


@needs("landlock")
def test_landlock_limits_reads_to_the_bundle_and_python_and_writes_to_the_data_dir(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    out = run_child(f"""
        attempt("passwd", lambda: open("/etc/passwd").read())
        attempt("secret", lambda: open({str(secret)!r}).read())
        attempt("own", lambda: open({str(tmp_path / 'bundle' / 'own.txt')!r}).read())
        attempt("write_data", lambda: open({str(tmp_path / 'data' / 'x')!r}, "w").write("ok"))
        attempt("write_bundle", lambda: open({str(tmp_path / 'bundle' / 'x')!r}, "w").write("no"))
        attempt("write_tmp", lambda: open("/tmp/protoreg-sandbox-escape", "w").write("no"))
    """, tmp_path)
    assert (out["passwd"], out["secret"], out["write_bundle"], out["write_tmp"]) == (13, 13, 13, 13)
    assert (out["own"], out["write_data"]) == ("allowed", "allowed")


@needs("landlock")
def test_a_thread_started_after_sandboxing_is_still_confined(tmp_path):
    out = run_child("""
        t = threading.Thread(target=lambda: attempt("thread_read", lambda: open("/etc/passwd").read()))
        t.start(); t.join()
    """, tmp_path)
    assert out["thread_read"] == 13


@needs("seccomp")
def test_seccomp_denies_inet_sockets_exec_fork_and_ptrace_but_not_threads(tmp_path):
    out = run_child("""
        import ctypes
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        attempt("tcp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
        attempt("exec", lambda: os.execv("/bin/true", ["true"]))
        attempt("fork", lambda: os.fork())
        libc = ctypes.CDLL(None, use_errno=True)
        def ptrace():
            if libc.ptrace(16, os.getppid(), 0, 0) != 0:  # PTRACE_ATTACH
                raise OSError(ctypes.get_errno(), "ptrace")
        attempt("ptrace", ptrace)
        def raw_socket():
            if libc.syscall(41, 2, 1, 0) < 0:  # SYS_socket(AF_INET, SOCK_STREAM) behind Python's back
                raise OSError(ctypes.get_errno(), "socket")
        attempt("raw_syscall_socket", raw_socket)
        t = threading.Thread(target=lambda: None); t.start(); t.join()
        out["threads"] = "work"
    """, tmp_path)
    assert (out["udp"], out["tcp6"], out["exec"], out["fork"], out["ptrace"], out["raw_syscall_socket"]) == \
        (1, 1, 1, 1, 1, 1)
    assert out["unix"] == "allowed" and out["threads"] == "work"


@needs("landlock")
def test_signals_to_the_parent_are_scoped_away(tmp_path):
    out = run_child("""
        attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
    """, tmp_path)
    assert out["kill_parent"] == 1


def test_rlimits_cap_memory(tmp_path):
    out = run_child("""
        try:
            blob = bytearray(2 * 1024 ** 3)
            out["memory"] = "allowed"
        except MemoryError:
            out["memory"] = "MemoryError"
    """, tmp_path)
    assert out["memory"] == "MemoryError"


def test_apply_refuses_to_run_with_threads_and_rejects_unknown_required_layers():
    import threading

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(SandboxError, match="before any thread starts"):
            apply_sandbox(SandboxPolicy())
    finally:
        stop.set()
        t.join()


def test_a_required_layer_that_cannot_engage_refuses_with_a_fix(tmp_path):
    code = textwrap.dedent("""
        from protoreg.sandbox import SandboxPolicy, apply_sandbox
        from protoreg.errors import SandboxError
        try:
            apply_sandbox(SandboxPolicy(landlock=False, required=frozenset({"landlock"})))
        except SandboxError as e:
            print("refused:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "refused: sandbox layer 'landlock' is required by the host but could not engage" in out


def test_the_bpf_program_returns_eperm_for_each_denied_syscall_and_enosys_for_clone3():
    import errno
    import struct

    from protoreg.sandbox.seccomp import ARCHES, RET_ALLOW, RET_ERRNO

    code = build_filter("x86_64")
    ins = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    _, table = ARCHES["x86_64"]
    verdict = {}
    for (op, _jt, _jf, k), (op2, _, _, k2) in zip(ins, ins[1:], strict=False):
        if op == 0x15 and op2 == 0x06:  # "jeq nr" immediately followed by "ret"
            verdict.setdefault(k, k2)
    for name in ("execve", "ptrace", "bpf", "io_uring_setup", "fork", "unshare", "mount", "process_vm_readv"):
        assert verdict[table[name]] == RET_ERRNO | errno.EPERM, name
    assert verdict[table["clone3"]] == RET_ERRNO | errno.ENOSYS
    assert ins[-1] == (0x06, 0, 0, RET_ALLOW)
