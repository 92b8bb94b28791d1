"""Run real child Pythons that sandbox themselves and then attack; they report back as JSON on stdout.

Skipping rule: a test that depends on a layer skips, with probe()'s reason, where this machine doesn't offer it.
Where probe() says the layer is offered, the child must report it active, or the test fails.
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protoreg.sandbox import default_read_paths, probe

OFFERED = {layer.name: layer for layer in probe().layers}
ROOT = Path(__file__).resolve().parents[2]
ALL_LAYERS = ("namespaces", "filesystem", "landlock", "seccomp")


def needs(*layers: str) -> pytest.MarkDecorator:
    missing = [f"{n}: {OFFERED[n].detail}" for n in layers if not OFFERED[n].active]
    return pytest.mark.skipif(bool(missing), reason="sandbox layer unavailable here: " + "; ".join(missing))


def landlock_abi() -> int:
    from protoreg.sandbox.landlock import abi_version

    return abi_version() if OFFERED["landlock"].active else 0


def first_barrier(*candidates: tuple[str, int]) -> tuple[str, int]:
    """The (layer, errno) of the first offered layer in the order an attack meets them; skip if none is offered."""
    for layer, err in candidates:
        if OFFERED[layer].active:
            return layer, err
    pytest.skip("none of the layers that stop this attack is available here: "
                + "; ".join(f"{n}: {OFFERED[n].detail}" for n, _ in candidates))


PRELUDE = """
import ctypes, errno, json, os, signal, socket, sys, threading, time
from protoreg.sandbox import SandboxPolicy, apply_sandbox
ARGS = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def attempt(name, fn):
    try:
        r = fn()
        out[name] = "allowed"
    except OSError as e:
        out[name] = e.errno
    except MemoryError:
        out[name] = "MemoryError"
def raw(name, nr, *args):
    def call():
        if libc.syscall(nr, *args) < 0:
            raise OSError(ctypes.get_errno(), name)
    attempt(name, call)
"""

APPLY = """
policy = ARGS["policy"]
for key in ("read_paths", "write_paths", "keep_fds"):
    policy[key] = tuple(policy.get(key, ()))
policy["required"] = frozenset(policy.get("required", ()))
report = apply_sandbox(SandboxPolicy(**policy))
out["layers"] = {l.name: l.active for l in report.layers}
out["details"] = {l.name: l.detail for l in report.layers}
"""


class Sandbox:
    """Runs attack code in a fresh sandboxed Python; ``bundle`` is readable, ``data`` writable, nothing else."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bundle = tmp_path / "bundle"
        self.data = tmp_path / "data"
        self.bundle.mkdir(exist_ok=True)
        self.data.mkdir(exist_ok=True)
        (self.bundle / "own.txt").write_text("mine")

    def policy(self, layers: tuple[str, ...] = ALL_LAYERS, **overrides: Any) -> dict[str, Any]:
        policy: dict[str, Any] = {"read_paths": list(default_read_paths(self.bundle)),
                                  "write_paths": [str(self.data)], "network_namespace": "namespaces" in layers,
                                  "filesystem": "filesystem" in layers,
                                  "landlock": "landlock" in layers, "seccomp": "seccomp" in layers}
        policy.update(overrides)
        return policy

    def popen(self, code: str, *, before: str = "", layers: tuple[str, ...] = ALL_LAYERS, via_parent: bool = False,
              pass_fds: tuple[int, ...] = (), stdin: int | None = None, **policy: Any) -> subprocess.Popen[str]:
        """Start the child: ``before`` runs unsandboxed, then apply_sandbox, then ``code``; it prints ``out``.

        ``via_parent`` puts a sacrificial Python between the test and the child, so attacks on ``os.getppid()``
        hit a process whose death or stop the test sees (as a non-zero exit), not pytest itself.
        """
        args = {"policy": self.policy(layers, **policy)}
        script = PRELUDE + textwrap.dedent(before) + APPLY + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
        cmd = [sys.executable, "-c", script, json.dumps(args)]
        if via_parent:
            cmd = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)",
                   *cmd]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, text=True,
                                pass_fds=pass_fds, cwd=ROOT)

    def run(self, code: str, *, expect: tuple[str, ...] = (), timeout: float = 30, **kw: Any) -> dict[str, Any]:
        """Run to completion; every layer in ``expect`` must have engaged (the test already skipped if the kernel
        doesn't offer it)."""
        proc = self.popen(code, **kw)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, f"child exited {proc.returncode}: {stderr}"
        out: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        for layer in expect:
            assert out["layers"][layer], f"{layer} is offered here but did not engage: {out['details'][layer]}"
        return out


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


class Listener:
    """A live server socket in the test process; ``touched()`` says whether anything reached it."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock, self.address = sock, address
        self.sock.setblocking(False)

    def touched(self) -> bool:
        try:
            if self.sock.type == socket.SOCK_DGRAM:
                self.sock.recvfrom(65536)
            else:
                self.sock.accept()[0].close()
        except BlockingIOError:
            return False
        return True


@pytest.fixture
def tcp_listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield Listener(sock, sock.getsockname())
    sock.close()


@pytest.fixture
def udp_listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield Listener(sock, sock.getsockname())
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0protoreg-sandbox-test-{threading.get_ident()}-{id(sock)}"
    sock.bind(name)
    sock.listen(8)
    yield Listener(sock, name)
    sock.close()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside any sandbox, for signal attacks."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


EPERM, EACCES = errno.EPERM, errno.EACCES
