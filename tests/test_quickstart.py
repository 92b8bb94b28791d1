"""The README quick start, for real: `python3 tasks.py demo` in a fresh copy of the repo serves the demo site."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read().decode()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_demo_command_sets_up_a_fresh_copy_and_serves_the_demo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the tracked files of the repo")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    copy = tmp_path / "protoreg"
    for rel in files:
        if (ROOT / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, copy / rel)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen([sys.executable, "tasks.py", "demo", "--port", str(port)], cwd=copy, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 500
        while True:
            try:
                from protoreg.gateway.hosts import site_label

                site = site_label("demo-site@example.org", "web+demo", "alice")
                status, body = _get(port, f"alice.web-demo.{site}.localhost:{port}")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("tasks.py demo did not serve the demo:\n" +
                                (tmp_path / "demo.log").read_text(errors="replace")[-3000:])
                time.sleep(1)
        assert status == 200 and "Demo site on <code>web+demo://alice</code>" in body
        status, dashboard = _get(port, f"localhost:{port}")
        assert status == 200 and "demo-site@example.org" in dashboard
        assert (copy / ".venv").is_dir()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
