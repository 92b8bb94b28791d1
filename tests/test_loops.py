"""protoreg/loops.py: the event loop of workers and of protoreg serve."""

from __future__ import annotations

import gc

import pytest

import protoreg
from protoreg.errors import ConfigError
from protoreg.loops import loop_factory, tune_gc
from protoreg.worker.config import WorkerConfig

HANDLER = """
import asyncio
from protoreg import Response
async def handleRequest(request):
    return Response(type(asyncio.get_running_loop()).__module__)
"""


def test_a_bad_choice_is_a_config_error_when_the_config_is_made():
    with pytest.raises(ConfigError, match="'auto', 'uvloop' or 'asyncio'"):
        WorkerConfig(event_loop="trio")


def test_asyncio_is_the_standard_loop():
    loop = loop_factory("asyncio")()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_workers_run_on_the_chosen_loop(tmp_path, choice, module):
    pytest.importorskip("uvloop", reason="uvloop is not installed here (it is a dependency on Linux and macOS)")
    (tmp_path / "h.py").write_text(HANDLER)
    (tmp_path / "manifest.json").write_text(
        '{"name": "loop", "version": "1.0", "browser_specific_settings": {"gecko": {"id": "loop@test"}},'
        ' "protocol_handlers": [{"protocol": "web+loop", "name": "loop", "uriHandlerScript": "h.py"}]}')
    reg = protoreg.Registry()
    reg.install(tmp_path)
    async with protoreg.Session(reg, event_loop=choice) as session:
        resp = await session.fetch("web+loop://x/")
        assert (await resp.text()).startswith(module)


def test_tune_gc_freezes_start_up_objects_and_raises_gen0():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 20000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_serve_refuses_an_unknown_event_loop_clearly(monkeypatch):
    from protoreg.loops import serve_loop

    monkeypatch.setenv("PROTOREG_EVENT_LOOP", "fast")
    with pytest.raises(ConfigError, match="PROTOREG_EVENT_LOOP"):
        serve_loop()


