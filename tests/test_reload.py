"""protoreg serve -e DIR --reload: edits swap the code under load (every request answers, on old or new code),
requests in flight finish on the old workers, a broken edit shows its error (terminal and page) without stopping
the server, and the fixed edit serves again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

import protoreg
from protoreg.reload import Reloader
from protoreg.testing import write_extension

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import asyncio
from protoreg import Response

async def handleRequest(request):
    if request.url.path == "/slow":
        await asyncio.sleep(1.0)
    return Response("VERSION")
"""


def version(root: Path, v: str) -> None:
    (root / "handler.py").write_text(SCRIPT.replace("VERSION", v))


async def test_reloader_swaps_code_and_requests_in_flight_finish_on_the_old_code(tmp_path):
    root = write_extension(tmp_path / "ext", scheme="web+r", script=SCRIPT.replace("VERSION", "v1"))
    reg = protoreg.Registry()
    reg.install(root)
    lines: list[str] = []
    reloader = Reloader(reg, [root], report=lines.append)
    async with protoreg.Session(reg) as session:
        assert await (await session.fetch("web+r://x/")).text() == "v1"
        slow = asyncio.ensure_future(session.fetch("web+r://x/slow"))
        await asyncio.sleep(0.3)
        version(root, "v2")
        assert reloader.poll()
        assert await (await session.fetch("web+r://x/")).text() == "v2"
        assert await (await slow).text() == "v1"  # drained on the old worker, not killed
    assert lines and lines[0].startswith("reloaded web-r@test 1.0.0")
    os.utime(root / "handler.py")  # touched, not changed: no reload
    assert reloader.poll() == []


def test_reloader_keeps_the_old_version_on_a_broken_edit_and_an_id_change(tmp_path):
    root = write_extension(tmp_path / "ext", scheme="web+r", script=SCRIPT.replace("VERSION", "v1"))
    reg = protoreg.Registry()
    old = reg.install(root)
    lines: list[str] = []
    reloader = Reloader(reg, [root], report=lines.append)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": "one"}))
    reloader.poll()
    assert reg.extensions["web-r@test"] is old and reloader.error_for("web+r") is not None
    assert "FAILED" in lines[-1] and "version" in lines[-1]
    (root / "manifest.json").write_text(json.dumps({**manifest, "browser_specific_settings": {"gecko": {"id": "x@y"}}}))
    reloader.poll()
    assert "the extension id changed from web-r@test to x@y" in lines[-1]
    (root / "manifest.json").write_text(json.dumps({**manifest, "version": "1.0.1"}))
    reloader.poll()
    assert reloader.error_for("web+r") is None and reg.extensions["web-r@test"].version == "1.0.1"


@pytest.fixture
def server(tmp_path):
    root = write_extension(tmp_path / "ext", scheme="web+r", script=SCRIPT.replace("VERSION", "v1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "protoreg.cli", "serve", "-e", str(root), "--reload", "--port",
                             "0", "--profile", str(tmp_path / "profile")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"localhost:(\d+)/", line).group(1))
        banner = [proc.stdout.readline() for _ in range(4)]
        assert any("live reload: watching" in b for b in banner), banner
        yield proc, root, port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _gateway(port: int) -> tuple[str, dict[str, str]]:
    from yarl import URL

    from protoreg.gateway.hosts import to_gateway_url

    url = to_gateway_url(URL("web+r://x/"), f"localhost:{port}", "web-r@test")
    return f"http://127.0.0.1:{port}", {"Host": url.host + f":{port}"}


async def _get(client: aiohttp.ClientSession, port: int, path: str = "/") -> tuple[int, str]:
    base, headers = _gateway(port)
    async with client.get(base + path, headers=headers) as resp:
        return resp.status, await resp.text()


async def _until(client: aiohttp.ClientSession, port: int, check, timeout: float = 15.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        got = await _get(client, port)
        if check(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_serve_reload_under_load_then_a_broken_edit_then_a_fixed_one(server):
    proc, root, port = server
    async with aiohttp.ClientSession() as client:
        assert await _get(client, port) == (200, "v1")
        # load: 8 clients in a loop while the handler is edited; every answer is 200 with v1 or v2
        stop = asyncio.Event()
        answers: list[tuple[int, str]] = []

        async def hammer() -> None:
            while not stop.is_set():
                answers.append(await _get(client, port))

        slow = asyncio.ensure_future(_get(client, port, "/slow"))
        tasks = [asyncio.ensure_future(hammer()) for _ in range(8)]
        await asyncio.sleep(0.5)
        version(root, "v2")
        assert await _until(client, port, lambda got: got == (200, "v2")) == (200, "v2")
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        assert await slow == (200, "v1")  # in flight across the swap: finished on the old code
        assert set(answers) == {(200, "v1"), (200, "v2")}, set(answers)
        assert answers[-1] == (200, "v2") and len(answers) > 20
        # a broken edit: the page says what is wrong; the server keeps running
        manifest = json.loads((root / "manifest.json").read_text())
        (root / "manifest.json").write_text(json.dumps({**manifest, "version": "not-a-version"}))
        status, page = await _until(client, port, lambda got: got[0] == 500)
        assert status == 500 and "does not load" in page and "version" in page and "web-r@test" in page
        # the fix: served again, with the new code
        (root / "manifest.json").write_text(json.dumps({**manifest, "version": "1.0.1"}))
        version(root, "v3")
        assert await _until(client, port, lambda got: got == (200, "v3")) == (200, "v3")
    assert proc.poll() is None
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    assert "reloaded web-r@test 1.0.0" in err and "FAILED, still serving the previous version" in err
    assert "reloaded web-r@test 1.0.1" in err and "Traceback" not in err


def test_reload_needs_an_extension_directory(capsys):
    from protoreg.cli import main

    assert main(["serve", "--reload", "--port", "0"]) == 2
    assert "--reload watches the extension directories given with -e DIR" in capsys.readouterr().err
