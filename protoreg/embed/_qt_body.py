"""The response body as QtWebEngine reads it: a QIODevice fed chunk by chunk from protoreg's event loop.

Two threads meet here. The producer is a coroutine on protoreg's asyncio loop (its own thread) that copies
``FetchResponse.stream()`` in with :meth:`ResponseBody.put`, which waits while more than ``high_water`` bytes are
queued (backpressure reaches the handler's worker through the stream's credit flow control). The consumer is the
engine, which calls ``read()`` from its IO thread whenever its pipe to the renderer has room, and waits for
``readyRead`` when a read returns nothing. The device is never sequential (overriding ``isSequential`` from Python
crashed the engine), so ``atEnd()`` and ``size()`` are what tell the engine where the body ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QIODevice

__all__ = ["ResponseBody"]


class ResponseBody(QIODevice):
    """A streamed body with a bounded queue; ``close()`` by the engine (load aborted) calls ``on_close``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None], *, total: int | None = None,
                 skip: int = 0, high_water: int = 1 << 20) -> None:
        super().__init__()
        self._loop = loop
        self._wake = wake  # emits readyRead on the device's own (Qt main) thread
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._failed = False
        self._closed = False
        self._total = total
        self._skip = skip  # leading bytes of the stream to drop (a Range the engine applies to a whole body)
        self._high_water = high_water
        self._room = asyncio.Event()
        self._room.set()
        self.delivered = 0
        #: The most bytes ever queued at once: the memory a response holds here, whatever its size.
        self.peak = 0
        self.on_close: Callable[[], None] | None = None
        self.open(QIODevice.OpenModeFlag.ReadOnly | QIODevice.OpenModeFlag.Unbuffered)

    # -- producer side (protoreg's loop thread) -----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` for the engine; waits while the queue is above the high-water mark."""
        with self._lock:
            if self._closed:
                return
            if self._skip:
                cut = min(self._skip, len(chunk))
                self._skip -= cut
                chunk = chunk[cut:]
            if not chunk:
                return
            was_empty = not self._chunks
            self._chunks.append(chunk)
            self._queued += len(chunk)
            self.peak = max(self.peak, self._queued)
            if self._queued > self._high_water:
                self._room.clear()
        if was_empty:
            self._wake()
        await self._room.wait()

    def finish(self) -> None:
        """The body ended: the engine completes the load once it has read what is queued."""
        with self._lock:
            self._eof = True
        self._wake()

    def fail(self) -> None:
        """The body broke off: the engine's next read fails the load (never a truncated success)."""
        with self._lock:
            self._failed = True
            self._chunks.clear()
            self._queued = 0
        self._wake()

    # -- consumer side (the engine's IO thread) -----------------------------------------------------------------
    def size(self) -> int:
        return self._total or 0

    def bytesAvailable(self) -> int:
        with self._lock:
            return self._queued

    def atEnd(self) -> bool:
        with self._lock:
            return self._eof and not self._chunks and not self._failed

    def readData(self, maxlen: int) -> bytes | None:
        with self._lock:
            if self._failed or self._closed:
                return None  # -1: the engine fails the load
            out: list[bytes] = []
            size = 0
            while self._chunks and size < maxlen:
                chunk = self._chunks.popleft()
                if size + len(chunk) > maxlen:
                    keep = maxlen - size
                    self._chunks.appendleft(chunk[keep:])
                    chunk = chunk[:keep]
                out.append(chunk)
                size += len(chunk)
            self._queued -= size
            self.delivered += size
            wake_producer = size and self._queued <= self._high_water // 2
        if wake_producer:
            self._loop.call_soon_threadsafe(self._room.set)
        return b"".join(out)

    def writeData(self, data: bytes) -> int:
        return -1

    def close(self) -> None:
        with self._lock:
            already, self._closed = self._closed, True
            self._chunks.clear()
            self._queued = 0
        if not already:
            self._loop.call_soon_threadsafe(self._room.set)
            if self.on_close is not None and not self._eof:
                self.on_close()
        super().close()
