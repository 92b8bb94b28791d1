"""Event loops and garbage-collector settings for protoreg's own long-running processes.

``protoreg serve`` runs on uvloop when it is installed (a dependency on Linux and macOS): libuv's loop costs less
per wake-up than asyncio's selector loop, and the gateway process serves every worker (``PROTOREG_EVENT_LOOP=asyncio``
keeps the standard loop). Workers run on asyncio unless ``WorkerConfig(event_loop="uvloop" | "auto")`` asks for
uvloop: it lowers a round trip's p50 by 10-40 us but adds 2.2 MiB to every idle worker (docs/benchmarks.md). An
embedding app's own loop is never changed: ``Session`` runs on whatever loop the app runs.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from typing import Literal

from protoreg.errors import ConfigError

__all__ = ["EventLoopChoice", "loop_factory", "serve_loop", "tune_gc"]

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new event loop: uvloop's for "auto" when it can be imported, asyncio's otherwise.
    "uvloop" without uvloop installed raises ImportError with what to install."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"the event loop must be 'auto', 'uvloop' or 'asyncio', got {choice!r} (WorkerConfig"
                          ".event_loop, or PROTOREG_EVENT_LOOP for protoreg serve)")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("the event loop 'uvloop' was asked for, but the uvloop package is not installed: "
                                  "pip install uvloop, or choose 'auto'") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def serve_loop() -> asyncio.AbstractEventLoop:
    """The loop ``protoreg serve`` runs on (``PROTOREG_EVENT_LOOP``: auto, uvloop or asyncio)."""
    return loop_factory(os.environ.get("PROTOREG_EVENT_LOOP", "auto"))()


def tune_gc() -> None:
    """For a long-running server, after start-up: move everything allocated so far out of the collector's view
    (``gc.freeze``) and collect the young generation less often. Each request allocates many short-lived objects
    and few cycles; the default gen-0 threshold (700) ran the cyclic collector every few requests."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(20000, gen1, gen2)
