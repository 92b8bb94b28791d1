"""docs/tutorial.md runs as written: every `$` line of its tutorial blocks, in order, in a fresh directory.

`protoreg serve` (long-running) is started in the background with a free port; the test reads the gateway
address from its banner, fetches the page through it, and stops it. `python` is this interpreter."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import aiohttp
from yarl import URL

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[list[str]]:
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- tutorial -->\s*```sh\n(.*?)```", text, re.S)
    return [shlex.split(line[2:]) for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_the_tutorial_has_every_step():
    names = [" ".join(c[:2]) for c in commands()]
    assert names == ["protoreg new", "protoreg check", "protoreg serve", "python -m", "protoreg pack",
                     "protoreg keygen", "protoreg store", "protoreg store", "protoreg trust", "protoreg install",
                     "protoreg fetch"]


async def _serve_and_open(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    argv = [a if a != "8080" else "0" for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "protoreg.cli", *argv[1:]], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        gateway = None
        for _ in range(20):
            line = proc.stdout.readline()
            if line.strip().startswith("web+notes:"):
                gateway = URL(line.split("->", 1)[1].strip())
                break
        assert gateway is not None, "serve printed no gateway address for web+notes"
        async with aiohttp.ClientSession() as client, client.get(
                gateway.with_host("127.0.0.1"), headers={"Host": f"{gateway.host}:{gateway.port}"}) as resp:
            assert resp.status == 200
            return await resp.text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def test_the_tutorial_runs_as_written(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    outputs = []
    for argv in commands():
        if argv[:2] == ["protoreg", "serve"]:
            outputs.append(await _serve_and_open(argv, tmp_path, env))
            continue
        exe = [sys.executable, "-m", "protoreg.cli"] if argv[0] == "protoreg" else [sys.executable]
        assert argv[0] in ("protoreg", "python")
        proc = subprocess.run([*exe, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert ": OK: " in outputs[1]
    assert "Hello from web+notes://example/" in outputs[2]
    assert "1 passed" in outputs[3]
    assert "packed notes@example.org 0.1.0 into notes.protoreg" in outputs[4]
    assert "installed notes@example.org 0.1.0 from store mystore" in outputs[9]
    assert "Hello from web+notes://example/" in outputs[10]
    assert not (tmp_path / "xdg").exists()  # everything stayed in the profiles the tutorial names
