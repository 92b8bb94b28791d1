"""Landlock alone (no namespace, no seccomp): the filesystem, TCP and scoping rules, and the per-ABI masking."""

from __future__ import annotations

import pytest

from protoreg.sandbox import landlock
from tests.sandbox.conftest import EACCES, EPERM, landlock_abi, needs

ONLY = ("landlock",)


def test_access_rights_are_masked_to_what_each_abi_knows():
    assert landlock.fs_rights(1) == (1 << 13) - 1
    assert landlock.fs_rights(2) == landlock.fs_rights(1) | landlock.FS_REFER
    assert landlock.fs_rights(3) == landlock.fs_rights(2) | landlock.FS_TRUNCATE
    assert landlock.fs_rights(4) == landlock.fs_rights(3)
    assert landlock.fs_rights(7) == landlock.fs_rights(5) == landlock.fs_rights(3) | landlock.FS_IOCTL_DEV
    assert [landlock.net_rights(abi) for abi in (3, 4, 7)] == [0, 3, 3]
    assert [landlock.scopes(abi) for abi in (5, 6, 7)] == [0, 3, 3]
    assert landlock.READ_RIGHTS & landlock.FS_EXECUTE == 0  # read-only paths can't be executed


def test_the_uapi_structs_have_the_kernel_layout():
    import ctypes

    assert ctypes.sizeof(landlock._RulesetAttr) == 24  # handled_access_fs, handled_access_net, scoped
    assert ctypes.sizeof(landlock._PathBeneathAttr) == 12  # packed: u64 allowed_access, s32 parent_fd


@needs("landlock")
def test_landlock_alone_confines_reads_writes_and_exec_to_the_granted_paths(sandbox):
    out = sandbox.run(f"""
        attempt("passwd", lambda: open("/etc/passwd").read())
        attempt("home", lambda: os.listdir(os.path.expanduser("~")))
        attempt("root_dir", lambda: os.listdir("/"))
        attempt("bundle", lambda: open({str(sandbox.bundle / 'own.txt')!r}).read())
        attempt("write_data", lambda: open({str(sandbox.data / 'x')!r}, "w").write("ok"))
        attempt("rename_in_data", lambda: os.rename({str(sandbox.data / 'x')!r}, {str(sandbox.data / 'y')!r}))
        attempt("write_bundle", lambda: open({str(sandbox.bundle / 'x')!r}, "w").write("no"))
        attempt("unlink_bundle", lambda: os.unlink({str(sandbox.bundle / 'own.txt')!r}))
        attempt("symlink_out", lambda: os.symlink("/etc/passwd", {str(sandbox.bundle / 'link')!r}))
        attempt("exec", lambda: os.execv("/bin/true", ["true"]))
        attempt("exec_python", lambda: os.execv(sys.executable, [sys.executable, "-c", "pass"]))
    """, layers=ONLY, expect=ONLY)
    assert (out["passwd"], out["home"], out["root_dir"]) == (EACCES,) * 3
    assert (out["bundle"], out["write_data"], out["rename_in_data"]) == ("allowed",) * 3
    assert (out["write_bundle"], out["unlink_bundle"], out["symlink_out"]) == (EACCES,) * 3
    assert (out["exec"], out["exec_python"]) == (EACCES, EACCES)
    assert (sandbox.data / "y").read_text() == "ok" and (sandbox.bundle / "own.txt").exists()


@needs("landlock")
def test_landlock_alone_denies_tcp_connect_and_bind_and_the_listener_sees_nothing(sandbox, tcp_listener):
    if landlock_abi() < 4:
        pytest.skip(f"TCP rights need Landlock ABI 4, this kernel has {landlock_abi()}")
    out = sandbox.run(f"""
        attempt("connect", lambda: socket.create_connection({tuple(tcp_listener.address)!r}, timeout=2))
        attempt("connect6", lambda: socket.create_connection(("::1", {tcp_listener.address[1]}), timeout=2))
        attempt("bind", lambda: socket.socket().bind(("127.0.0.1", 0)))
        out["detail"] = out["details"]["landlock"]
    """, layers=ONLY, expect=ONLY)
    assert (out["connect"], out["connect6"], out["bind"]) == (EACCES,) * 3
    assert "TCP bind/connect denied" in out["detail"]
    assert not tcp_listener.touched()


@needs("landlock")
def test_landlock_alone_does_not_cover_udp_which_is_left_to_the_namespace_and_seccomp(sandbox, udp_listener):
    # A documented gap of Landlock up to ABI 7: if this starts failing, the kernel grew UDP rights.
    out = sandbox.run(f"""
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", {udp_listener.address!r}))
    """, layers=ONLY, expect=ONLY)
    assert out["udp"] == "allowed" and udp_listener.touched()


@needs("landlock")
def test_landlock_scoping_blocks_abstract_sockets_and_signals_leaving_the_sandbox(sandbox, abstract_listener,
                                                                                bystander):
    if landlock_abi() < 6:
        pytest.skip(f"scoping needs Landlock ABI 6, this kernel has {landlock_abi()}")
    out = sandbox.run(f"""
        attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect({abstract_listener.address!r}))
        attempt("sigterm_bystander", lambda: os.kill({bystander.pid}, signal.SIGTERM))
        attempt("sigterm_parent", lambda: os.kill(os.getppid(), signal.SIGTERM))
        raw("ptrace_parent", 101 if os.uname().machine == "x86_64" else 117, 16, os.getppid(), 0, 0)
        if out["ptrace_parent"] == "allowed":
            libc.ptrace(17, os.getppid(), 0, 0); os.kill(os.getppid(), signal.SIGCONT)
        attempt("signal_self", lambda: os.kill(os.getpid(), 0))
    """, layers=ONLY, expect=ONLY, via_parent=True)
    assert (out["abstract"], out["sigterm_bystander"], out["sigterm_parent"], out["ptrace_parent"]) == (EPERM,) * 4
    assert out["signal_self"] == "allowed"
    assert bystander.poll() is None and not abstract_listener.touched()


@needs("landlock")
def test_a_path_that_does_not_exist_is_skipped_and_reported(sandbox):
    missing = str(sandbox.tmp / "not-there")
    out = sandbox.run("", layers=ONLY, expect=ONLY, read_paths=[*sandbox.policy()["read_paths"], missing])
    assert f"skipped missing path(s): {missing}" in out["details"]["landlock"]
