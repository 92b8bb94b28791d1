"""What a worker inherits: descriptors are closed down to stdio and the kept ones; the environment is scrubbed."""

from __future__ import annotations

import errno
import os

from protoreg.sandbox import close_fds, scrubbed_env


def test_scrubbed_env_drops_secrets_and_keeps_only_the_base_the_named_and_the_extra_variables():
    source = {"AWS_SECRET_ACCESS_KEY": "s", "HOME": "/home/u", "LD_PRELOAD": "/evil.so", "PYTHONPATH": "/x",
              "TZ": "Europe/Paris", "HTTPS_PROXY": "http://p"}
    env = scrubbed_env(source=source, extra={"PROTOREG_WORKER": "1"})
    assert env == {"LANG": "C.UTF-8", "PYTHONUTF8": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
                   "TZ": "Europe/Paris", "PROTOREG_WORKER": "1"}
    assert "TZ" not in scrubbed_env(keep=(), source=source)


def test_the_fds_layer_closes_inherited_descriptors_except_stdio_and_the_kept_ones(sandbox, tmp_path):
    leaked = os.open(tmp_path / "leak.txt", os.O_CREAT | os.O_RDWR)
    kept_r, kept_w = os.pipe()
    try:
        out = sandbox.run(f"""
            attempt("leaked", lambda: os.fstat({leaked}))
            attempt("kept", lambda: os.write({kept_w}, b"still here"))
            out["detail"] = out["details"]["fds"]
        """, layers=(), pass_fds=(leaked, kept_w), keep_fds=[kept_w])
        assert os.read(kept_r, 100) == b"still here"
    finally:
        for fd in (leaked, kept_r, kept_w):
            os.close(fd)
    assert out["leaked"] == errno.EBADF and out["kept"] == "allowed"
    assert out["detail"].startswith(f"kept 0-2 and [{kept_w}]; closed ")


def test_close_fds_in_a_forked_child_reports_how_many_it_closed():
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            closed = close_fds(keep=[write])
            still = sorted(fd for fd in extra if _open(fd))
            os.write(write, f"{closed} {still}".encode())
        finally:
            os._exit(0)
    os.close(write)
    text = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    for fd in extra:
        os.close(fd)
    closed, still = text.split(" ", 1)
    assert int(closed) >= 4 and still == "[]"  # the three extras and the pipe's read end, at least


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
