"""The workers of one extension: started lazily, restarted with backoff after a crash, load-balanced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from protoreg.worker.config import WorkerConfig
from protoreg.worker.process import WorkerProcess

__all__ = ["ExtensionPool"]


class ExtensionPool:
    def __init__(self, label: str, config: WorkerConfig,
                 start: Callable[[], Awaitable[WorkerProcess]]) -> None:
        self.label = label
        self.config = config
        self._start = start
        self.workers: list[WorkerProcess] = []
        self.crashes: list[float] = []       # monotonic times of crashes in the last minute
        self.starts = 0
        self._lock = asyncio.Lock()

    def _on_exit(self, worker: WorkerProcess) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if not worker.stopped_by_host:
            self.crashes.append(time.monotonic())

    def _backoff(self) -> float:
        """Seconds to wait before the next start: exponential in the crashes of the last minute."""
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < 60.0]
        if not self.crashes:
            return 0.0
        delay = self.config.backoff_initial * self.config.backoff_factor ** (len(self.crashes) - 1)
        return max(0.0, min(delay, self.config.backoff_max) - (now - self.crashes[-1]))

    def _pick(self) -> WorkerProcess | None:
        live = [w for w in self.workers if w.alive]
        if not live:
            return None
        best = min(live, key=lambda w: w.in_flight)
        if best.in_flight < self.config.max_in_flight or len(live) >= self.config.pool_size:
            return best
        return None

    async def acquire(self) -> WorkerProcess:
        worker = self._pick()
        if worker is not None:
            return worker
        async with self._lock:
            worker = self._pick()
            if worker is not None:
                return worker
            delay = self._backoff()
            if delay:
                await asyncio.sleep(delay)
            worker = await self._start()
            self.starts += 1
            self.workers.append(worker)
            worker.exited.add_done_callback(lambda _f, w=worker: self._on_exit(w))
            return worker

    async def stop_idle(self, idle_timeout: float) -> None:
        now = time.monotonic()
        idle = [w for w in self.workers if w.alive and w.in_flight == 0 and now - w.last_active >= idle_timeout]
        await asyncio.gather(*(w.stop() for w in idle), return_exceptions=True)

    async def close_when_idle(self, timeout: float = 30.0) -> None:
        """Stop the workers once the requests they are serving finish (at most ``timeout`` seconds): an updated
        extension's old workers drain while new requests go to a new pool with the new code."""
        deadline = time.monotonic() + timeout
        while any(w.alive and w.in_flight for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in list(self.workers)), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {"extension": self.label, "starts": self.starts, "recent_crashes": len(self.crashes),
                "workers": [w.stats() for w in self.workers]}
