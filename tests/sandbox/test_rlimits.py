"""rlimits alone (no other restricting layer): memory, CPU and descriptor bombs hit their limits."""

from __future__ import annotations

import errno
import os
import signal

from protoreg.sandbox import SandboxPolicy
from protoreg.sandbox.rlimits import apply_rlimits

ONLY = ()  # no namespace, Landlock or seccomp: each limit is shown to hold on its own


def test_a_memory_bomb_hits_rlimit_as(sandbox):
    out = sandbox.run("""
        attempt("bomb", lambda: bytearray(2 * 1024 ** 3))
    """, layers=ONLY, rlimit_as=512 * 1024 ** 2, expect=("rlimits",))
    assert out["bomb"] == "MemoryError"


def test_a_busy_loop_is_stopped_by_rlimit_cpu(sandbox):
    proc = sandbox.popen("while True: pass", layers=ONLY, rlimit_cpu=1)
    proc.communicate(timeout=20)
    assert proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def test_fd_exhaustion_stops_at_rlimit_nofile(sandbox):
    out = sandbox.run("""
        fds = []
        try:
            while len(fds) < 10000:
                fds.append(os.dup(1))
        except OSError as e:
            out["error"] = e.errno
        out["opened"] = len(fds)
    """, layers=ONLY, rlimit_nofile=32)
    assert out["error"] == errno.EMFILE and out["opened"] < 32


def test_rlimits_are_only_ever_lowered_and_cpu_gets_a_one_second_grace(sandbox):
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = sandbox.run("""
        import resource
        out["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
        out["cpu"] = resource.getrlimit(resource.RLIMIT_CPU)
        out["as"] = resource.getrlimit(resource.RLIMIT_AS)
    """, layers=ONLY, rlimit_nofile=hard * 2 if hard != resource.RLIM_INFINITY else None, rlimit_cpu=7,
        rlimit_as=None)
    if hard != resource.RLIM_INFINITY:
        assert out["nofile"] == [hard, hard]  # asking for more than the hard limit never raises it
    assert out["cpu"] == [7, 8]
    assert out["as"] == list(resource.getrlimit(resource.RLIMIT_AS))  # None leaves the limit alone


def test_the_report_says_nproc_does_not_bind_root(sandbox):
    out = sandbox.run("", layers=ONLY)
    detail = out["details"]["rlimits"]
    assert "AS=1073741824" in detail and "NOFILE=256" in detail
    assert ("NPROC does not bind root" in detail) == (os.geteuid() == 0)


def test_apply_rlimits_describes_what_it_set_in_a_forked_child():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(write, apply_rlimits(SandboxPolicy(rlimit_as=None, rlimit_cpu=5, rlimit_nofile=None,
                                                        rlimit_nproc=None)).encode())
        finally:
            os._exit(0)
    os.close(write)
    text = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert text.startswith("CPU=5")
