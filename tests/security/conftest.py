"""A hostile extension and a victim extension installed side by side, served by one Session."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import protoreg
from protoreg.sandbox import probe
from protoreg.testing import write_extension

OFFERED = {layer.name: layer for layer in probe().layers}
ATTACKER = (Path(__file__).parent / "hostile_handler.py").read_text()
VICTIM = """
import os
from protoreg import Response
async def handleRequest(request):
    return Response(f"victim ok {os.getpid()}")
"""


def needs(*layers: str) -> pytest.MarkDecorator:
    missing = [f"{n}: {OFFERED[n].detail}" for n in layers if not OFFERED[n].active]
    return pytest.mark.skipif(bool(missing), reason="sandbox layer unavailable here: " + "; ".join(missing))


@pytest.fixture
async def arena(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="protoreg.worker")
    reg = protoreg.Registry()
    victim = reg.install(write_extension(tmp_path / "victim", scheme="web+victim", script=VICTIM,
                                         ext_id="victim@test"))
    reg.install(write_extension(tmp_path / "attacker", scheme="web+evil", script=ATTACKER, ext_id="evil@test",
                                permissions=["storage"]))
    config = protoreg.WorkerConfig(request_timeout=10.0,
                                   sandbox_per_extension={"evil@test": {"rlimit_cpu": 2}})
    async with protoreg.Session(reg, config) as session:
        yield session, victim, caplog


async def attack(session, attack_name: str, **query: str) -> dict:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    resp = await session.fetch(f"web+evil://x/{attack_name}" + (f"?{q}" if q else ""))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def victim_still_serves(session) -> None:
    resp = await session.fetch("web+victim://v/")
    assert resp.status == 200 and (await resp.text()).startswith("victim ok")
