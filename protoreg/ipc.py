"""The binary framed protocol between the parent and a worker process.

Every frame is a 10-byte header followed by a payload::

    type: u8 | flags: u8 | stream: u32 (big-endian) | length: u32 | payload[length]

Control payloads (heads, errors, capability calls) are UTF-8 JSON objects; body chunks are raw bytes. Nothing is
ever pickled. Each request is a *stream*; body data in both directions is flow-controlled with per-stream credit
(HTTP/2 style): a sender may have at most ``window`` unacknowledged bytes in flight, and the receiver returns credit
with a WINDOW frame as its consumer reads. A slow reader therefore stops the writer on the other side of the
process boundary, and no side buffers a whole body.

The parent treats anything unexpected from a worker (unknown type, oversized frame, bad JSON, data for a stream
that was never opened, credit overflow) as a compromise: :class:`ProtocolViolation` is raised and the worker is
killed.

FILE frames (worker to parent) carry body bytes by reference: "the bytes [offset, offset+length) of this file in my
data dir, whose sha256 is h". The parent reads the file itself, checks the hash of the whole file and only then
passes the bytes on (protoreg/worker/files.py), so verified content (ipfs blocks) never crosses the process boundary
as data. A FILE frame is charged ``FILE_COST`` of the stream's window; the parent reads at most ``READ_AHEAD``
referenced files ahead of the consumer, so what it holds stays bounded however many references are queued.
"""

from __future__ import annotations

import asyncio
import collections
import json
import mmap
import re
import struct
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, Final

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_CHUNK",
    "MAX_FILE",
    "Channel",
    "FrameType",
    "InboundBody",
    "ProtocolViolation",
    "encode_frame",
    "recv_frame_blocking",
]

HEADER: Final = struct.Struct("!BBII")
MAX_CHUNK: Final = 256 * 1024          # largest DATA payload a sender produces
MAX_CONTROL: Final = 256 * 1024        # largest JSON payload accepted from a peer
MAX_INIT: Final = 256 * 1024 * 1024    # INIT carries the bundle's verified files (parent -> worker only)
DEFAULT_WINDOW: Final = 2 * 1024 * 1024
#: What a DATA frame costs in flow-control credit besides its payload, on both sides: a stream's window bounds the
#: frames queued for it as well as its bytes (a peer can't queue millions of tiny chunks).
FRAME_COST: Final = 64
#: A sha256 as FILE frames name it: 64 lowercase hex digits.
SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
#: Frames queued in one event-loop iteration after which they are written without waiting for its end.
FLUSH_FRAMES: Final = 16
#: What a FILE frame costs in credit: the parent holds the reference, not the bytes, and reads at most
#: ``READ_AHEAD`` referenced files ahead of its consumer, so a reference is charged as a small control frame and a
#: worker can queue a long file's worth of them without a credit round trip per block.
FILE_COST: Final = 1024
READ_AHEAD: Final = 4
#: Bytes the strict side lets queue towards its peer (replies it has not read) before it gives up on the peer.
MAX_QUEUED: Final = 64 * 1024 * 1024
#: Largest file a FILE frame may name (the parent reads and hashes it whole): IPFS blocks are at most 1 MiB.
MAX_FILE: Final = 1024 * 1024
_CREDIT: Final = struct.Struct("!I")


class FrameType(IntEnum):
    HELLO = 1       # w->p  JSON {pid, sandbox}
    INIT = 2        # p->w  JSON header + files (see worker.bootstrap)
    REQUEST = 3     # p->w  JSON {method, url, headers, origin, body}
    RESPONSE = 4    # w->p  JSON {status, headers}
    DATA = 5        # both  body bytes
    END = 6         # both  end of body
    WINDOW = 7      # both  u32 credit returned
    ERROR = 8       # w->p  JSON {status, message}
    ABORT = 9       # p->w  cancel the stream's handler
    CALL = 10       # w->p  JSON capability call
    RESULT = 11     # p->w  JSON capability result
    SHUTDOWN = 12   # p->w  finish and exit
    PING = 13       # p->w  are you responsive? (after a timeout)
    PONG = 14       # w->p  answered from the worker's event loop
    FILE = 15       # w->p  JSON {path, sha256, offset, length}: body bytes by reference (see the module doc)


class ProtocolViolation(Exception):
    """The peer sent something the protocol does not allow (internal; the parent kills the worker)."""


def encode_frame(ftype: FrameType, stream: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return HEADER.pack(ftype, flags, stream, len(payload)) + payload


def encode_json(obj: Any) -> bytes:
    """Any JSON value (the stdlib's rules: bytes and other non-JSON types are a TypeError, never coerced)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _str_subclass(obj: Any) -> Any:
    if isinstance(obj, str):  # multidict's istr and other str subclasses
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")


# Two codecs for the same JSON. Workers use the stdlib's, built once (no encoder per call, str input so no
# encoding detection): msgspec would add 1.5 MiB to every idle worker. The parent, which serves every worker and
# is the bottleneck under load, switches to msgspec (use_msgspec(), called by protoreg.worker.process): 13x faster
# encoding, 5x faster decoding, and strict (no NaN, no lone surrogates).
_stdlib_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_stdlib_decoder = json.JSONDecoder().decode
_encode_head: Callable[[Any], bytes] = lambda obj: _stdlib_encoder(obj).encode()  # noqa: E731
_decode: Callable[[bytes], Any] = lambda payload: _stdlib_decoder(payload.decode())  # noqa: E731
_DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, UnicodeDecodeError)


def use_msgspec() -> None:
    """Encode heads and decode control frames with msgspec in this process (the parent)."""
    global _encode_head, _decode
    import msgspec

    _encode_head = msgspec.json.Encoder(enc_hook=_str_subclass).encode
    _decode = msgspec.json.Decoder().decode


def encode_head(obj: dict[str, Any]) -> bytes:
    """A request or response head: str, int, bool, None and lists of [str, str] only (built by protoreg itself,
    so the types are known); the hot path. A lone surrogate is a UnicodeEncodeError."""
    return _encode_head(obj)


def decode_json(payload: bytes, limit: int = MAX_CONTROL) -> dict[str, Any]:
    """A control payload from the peer: a JSON object of at most ``limit`` bytes (strict JSON in the parent)."""
    if len(payload) > limit:
        raise ProtocolViolation(f"control payload of {len(payload)} bytes exceeds {MAX_CONTROL}")
    try:
        obj = _decode(payload)
    except _DECODE_ERRORS as exc:  # msgspec.DecodeError is a ValueError
        raise ProtocolViolation(f"control payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation("control payload is not a JSON object")
    return obj


def recv_exactly_blocking(sock: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        buf += chunk
    return bytes(buf)


def recv_frame_blocking(sock: Any, max_size: int = MAX_INIT) -> tuple[int, int, int, bytes]:
    """Read one frame from a blocking socket (used by the worker bootstrap before any event loop exists)."""
    ftype, flags, stream, length = HEADER.unpack(recv_exactly_blocking(sock, HEADER.size))
    if length > max_size:
        raise ProtocolViolation(f"frame of {length} bytes exceeds {max_size}")
    return ftype, flags, stream, recv_exactly_blocking(sock, length)


class InboundBody:
    """Body chunks received for one stream, consumed as an async iterator; returns credit as it is read."""

    __slots__ = ("_ahead", "_chunks", "_done", "_error", "_refs", "_return_credit", "_unstarted", "_waiter",
                 "resolve")

    def __init__(self, return_credit: Callable[[int, bool], None]) -> None:
        self._chunks: collections.deque[Any] = collections.deque()
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._return_credit = return_credit
        self._refs = 0  # FILE references among the queued chunks
        self._unstarted: collections.deque[_FileRead] = collections.deque()  # their reads not begun, in order
        self._ahead = 0  # reads begun and not yet consumed (at most READ_AHEAD)
        #: Reads the bytes a FILE frame names (set by the owner; None: FILE frames are a violation on this stream).
        self.resolve: Callable[[dict[str, Any]], Awaitable[bytes]] | None = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._wake()

    def feed_ref(self, ref: dict[str, Any]) -> None:
        """A FILE reference: read at most READ_AHEAD ahead of the consumer; its bytes come in order."""
        item = _FileRead(ref)
        self._chunks.append(item)
        self._unstarted.append(item)
        self._refs += 1
        self._read_ahead()
        self._wake()

    def _read_ahead(self) -> None:
        while self._unstarted and self._ahead < READ_AHEAD:
            item = self._unstarted.popleft()
            assert self.resolve is not None
            item.task = asyncio.ensure_future(self.resolve(item.ref))  # a future as is; a coroutine as a task
            item.task.add_done_callback(_retrieve)
            self._ahead += 1

    def feed_eof(self) -> None:
        self._done = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._done = True
            self._wake()

    @property
    def finished(self) -> bool:
        return self._done and not self._chunks

    @property
    def complete(self) -> bool:
        """The whole body has arrived (reading it will not wait)."""
        return self._done and self._error is None and not self._refs

    def take_all(self) -> bytes:
        """Every chunk at once, when the body is :attr:`complete` (reading it does not wait)."""
        chunks = self._chunks
        count = len(chunks)
        data = chunks.popleft() if count == 1 else b"".join(chunks)
        chunks.clear()
        if count:
            self._return_credit(len(data) + FRAME_COST * count, True)
        return data

    def __aiter__(self) -> InboundBody:
        return self

    async def __anext__(self) -> bytes:
        return await self.next_chunk()

    async def next_chunk(self, timeout: float | None = None) -> bytes:
        """The next chunk; StopAsyncIteration at the end; TimeoutError when none arrives within ``timeout``.

        A chunk that is already buffered is returned without a trip through the event loop.
        """
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(
                timeout, lambda w=waiter: w.done() or w.set_exception(TimeoutError()))
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = self._chunks.popleft()
        if type(chunk) is _FileRead:
            self._refs -= 1
            assert chunk.task is not None  # reads begin in order, and the oldest is always among the READ_AHEAD
            try:
                data = await chunk.task
            except BaseException:
                chunk.task.cancel()
                raise
            finally:
                self._ahead -= 1
                self._read_ahead()
            self._return_credit(FILE_COST, not self._chunks)
            return data
        self._return_credit(len(chunk) + FRAME_COST, not self._chunks)
        return chunk


class _FileRead:
    __slots__ = ("ref", "task")

    def __init__(self, ref: dict[str, Any]) -> None:
        self.ref = ref
        self.task: asyncio.Future[bytes] | None = None


def _retrieve(task: asyncio.Future[bytes]) -> None:
    """Mark a file read's exception as seen: the consumer gets it when it reaches that chunk, or never wanted it."""
    if not task.cancelled():
        task.exception()


def _file_ref(payload: bytes) -> dict[str, Any]:
    """A FILE frame's reference, its types and bounds checked (the path itself is checked where it is opened)."""
    ref = decode_json(payload)
    path, digest, offset, length = ref.get("path"), ref.get("sha256"), ref.get("offset"), ref.get("length")
    if not (isinstance(path, str) and 0 < len(path) <= 4096 and isinstance(digest, str)
            and SHA256_HEX.fullmatch(digest)):
        raise ProtocolViolation("FILE frame without a relative path and a lowercase hex sha256")
    if not (type(offset) is int and type(length) is int and 0 <= offset and 0 < length
            and offset + length <= MAX_FILE):
        raise ProtocolViolation(f"FILE frame with offset {offset!r} and length {length!r} (at most {MAX_FILE} bytes)")
    return {"path": path, "sha256": digest, "offset": offset, "length": length}


class _Outbound:
    __slots__ = ("credit", "waiter")

    def __init__(self, credit: int) -> None:
        self.credit = credit
        self.waiter: asyncio.Future[None] | None = None


class Channel(asyncio.BufferedProtocol):
    """One end of a framed connection. Control frames go to ``on_frame``; DATA/END/WINDOW are handled here.

    ``strict`` (the parent's side) turns any protocol misuse into :class:`ProtocolViolation` reported through
    ``on_violation``; the worker side is lenient about late frames for streams it already finished.
    """

    def __init__(
        self,
        on_frame: Callable[[int, int, bytes], None],
        on_lost: Callable[[BaseException | None], None],
        *,
        window: int = DEFAULT_WINDOW,
        max_frame: int = MAX_CHUNK + 1024,
        strict: bool = False,
        on_violation: Callable[[ProtocolViolation], None] | None = None,
    ) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._on_violation = on_violation
        self._window = window
        self._max_frame = max_frame
        self._strict = strict
        self._violated = False
        # The read buffer the transport receives into (BufferedProtocol): one allocation for the channel's life
        # instead of a fresh 256 KiB object per read (an mmap, mremap and munmap, and page faults, per read).
        # Unparsed bytes are _rbuf[_rstart:_rend]. An anonymous mapping, so that its pages cost memory only once
        # a read has reached them (a bytearray is zero-filled, which would add its whole size to every worker).
        self._rbuf = mmap.mmap(-1, 2 * (MAX_CHUNK + HEADER.size) + 65536)
        self._rview = memoryview(self._rbuf)
        self._rstart = self._rend = 0
        self._transport: asyncio.Transport | None = None
        self._inbound: dict[int, InboundBody] = {}
        self._unacked: dict[int, int] = {}
        self._consumed_acc: dict[int, int] = {}
        self._outbound: dict[int, _Outbound] = {}
        #: Highest stream id this side has opened; the strict side treats frames for higher ids as violations.
        self.max_stream = 0
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        #: Credit for frames that may still arrive on streams this side closed early (what the peer had in flight).
        self._late_budget = 0
        self.closed = False
        #: Small frames written in this event-loop iteration after its first, sent together by one write at its end
        #: (_flush): 64 concurrent requests cost two syscalls instead of 64, each of which wakes the peer.
        self._pending: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        #: Set by the owner: True when other requests are in flight, so that the first frame of a loop iteration
        #: may wait for the others (throughput) instead of leaving at once (latency of a lone request).
        self.busy: Callable[[], bool] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pending.clear()
        err = ConnectionResetError("channel closed")
        # Open inbound bodies are failed by the owner (on_lost), which knows why the peer went away.
        for out in self._outbound.values():
            if out.waiter is not None and not out.waiter.done():
                out.waiter.set_exception(err)
        self._release_drain(err)
        self._on_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._release_drain(None)

    def _release_drain(self, err: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                if err is None:
                    w.set_result(None)
                else:
                    w.set_exception(err)

    def get_buffer(self, sizehint: int) -> memoryview:
        free = len(self._rbuf) - self._rend
        if free < 65536 or self._rend - self._rstart >= HEADER.size:
            self._make_room()
        return self._rview[self._rend:]

    def _make_room(self) -> None:
        """Keep room for the frame being received: move its start to the front, or grow for an oversized frame
        (which the parser refuses once its header is read, before the body arrives)."""
        start, end = self._rstart, self._rend
        need = 65536
        if end - start >= HEADER.size:
            length = HEADER.unpack_from(self._rbuf, start)[3]
            need = HEADER.size + min(length, self._max_frame + 1) - (end - start)
        if len(self._rbuf) - end >= need:
            return
        if start:
            self._rbuf.move(0, start, end - start)
            end -= start
            self._rstart, self._rend = 0, end
        if len(self._rbuf) - end < need:  # a frame larger than the buffer: only up to the frame limit
            grown = mmap.mmap(-1, end + need)
            grown[:end] = self._rview[:end]
            self._rbuf, self._rview = grown, memoryview(grown)  # the old one goes once no read refers to it

    def buffer_updated(self, nbytes: int) -> None:
        self._rend += nbytes
        offset = self._parse(self._rstart, self._rend)
        if offset < 0 or offset == self._rend:  # a violation, or the usual case: everything read was whole frames
            self._rstart = self._rend = 0
        else:
            self._rstart = offset

    def data_received(self, data: bytes) -> None:
        """Feed bytes as if read (tests, fuzzing); the transport uses get_buffer/buffer_updated."""
        while data:
            buf = self.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            data = data[n:]
            self.buffer_updated(n)
            if self._violated:
                return

    def _parse(self, offset: int, size: int) -> int:
        """Dispatch the whole frames in the read buffer's [offset:size]; the offset after the last one, or -1 on a
        violation."""
        src, view = self._rbuf, self._rview
        try:
            while size - offset >= HEADER.size:
                ftype, _flags, stream, length = HEADER.unpack_from(src, offset)
                if length > self._max_frame:
                    raise ProtocolViolation(f"frame of {length} bytes exceeds the {self._max_frame}-byte limit")
                end = offset + HEADER.size + length
                if end > size:
                    break
                payload = bytes(view[offset + HEADER.size : end])
                offset = end
                self._dispatch(ftype, stream, payload)
        except ProtocolViolation as exc:
            self._violate(exc)
            return -1
        return offset

    # -- dispatch ---------------------------------------------------------------------------------------------
    def _violate(self, exc: ProtocolViolation) -> None:
        self._violated = True
        if self._on_violation is not None:
            self._on_violation(exc)
        if self._transport is not None:
            self._transport.abort()

    def _dispatch(self, ftype: int, stream: int, payload: bytes) -> None:
        if ftype == FrameType.DATA:
            if self._strict and not payload:
                raise ProtocolViolation(f"empty DATA frame on stream {stream}")
            body = self._inbound.get(stream)
            if body is None:
                if self._strict and stream > self.max_stream:
                    raise ProtocolViolation(f"DATA for stream {stream}, which was never opened")
                self.charge_late(stream, len(payload) + FRAME_COST)
                return  # late data for a stream this side already aborted
            pending = self._unacked.get(stream, 0) + len(payload) + FRAME_COST
            if pending > self._window:
                raise ProtocolViolation(f"stream {stream} sent {pending} bytes past its {self._window}-byte window")
            self._unacked[stream] = pending
            body.feed(payload)
        elif ftype == FrameType.FILE:
            if not self._strict:
                raise ProtocolViolation("FILE frames only go from a worker to the parent")
            ref = _file_ref(payload)
            body = self._inbound.get(stream)
            if body is None:
                if stream > self.max_stream:
                    raise ProtocolViolation(f"FILE for stream {stream}, which was never opened")
                self.charge_late(stream, FILE_COST)
                return
            if body.resolve is None:
                raise ProtocolViolation(f"FILE frame on stream {stream}, which takes no file references")
            pending = self._unacked.get(stream, 0) + FILE_COST
            if pending > self._window:
                raise ProtocolViolation(f"stream {stream} sent {pending} bytes past its {self._window}-byte window")
            self._unacked[stream] = pending
            body.feed_ref(ref)
        elif ftype == FrameType.END:
            body = self._inbound.pop(stream, None)
            self._unacked.pop(stream, None)
            self._consumed_acc.pop(stream, None)
            if body is None:
                if self._strict and stream > self.max_stream:
                    raise ProtocolViolation(f"END for stream {stream}, which was never opened")
                self.charge_late(stream, FRAME_COST)
                return
            body.feed_eof()
            self._on_frame(ftype, stream, payload)
        elif ftype == FrameType.WINDOW:
            if len(payload) != _CREDIT.size:
                raise ProtocolViolation("WINDOW frame with a malformed payload")
            out = self._outbound.get(stream)
            if out is None:
                return  # credit for a stream we already finished sending
            (credit,) = _CREDIT.unpack(payload)
            out.credit += credit
            if out.credit > self._window:
                raise ProtocolViolation(f"stream {stream} returned more credit than was sent")
            if out.waiter is not None and not out.waiter.done():
                out.waiter.set_result(None)
        else:
            self._on_frame(ftype, stream, payload)

    def charge_late(self, stream: int, cost: int) -> None:
        """Account for a frame on a stream this side closed early; past what the peer could have had in flight,
        the strict side treats such frames as a violation (a flood on dead streams)."""
        if not self._strict:
            return
        self._late_budget -= cost
        if self._late_budget < 0:
            raise ProtocolViolation(f"frames for stream {stream}, which is closed, beyond what was in flight")

    # -- sending ----------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """Queue ``data`` for the write at the end of this loop iteration (frames keep their order)."""
        if self._transport is None or self.closed:
            raise ConnectionResetError("channel closed")
        if self._flush_handle is None:  # the first write of this iteration goes out at once (latency) ...
            self._flush_handle = self._loop.call_soon(self._flush)
            if self.busy is not None and self.busy():  # ... unless others are in flight: then it waits for the
                self._pending.append(data)             # rest of the iteration too (one syscall, one wake-up)
                return
            self._transport.write(data)
        else:  # ... the next ones together when the iteration ends (throughput), or once FLUSH_FRAMES wait:
            pending = self._pending  # a sender that never yields (FILE references of a whole file, sent in one
            pending.append(data)     # loop iteration) must not hold back what the peer could start on
            if len(pending) >= FLUSH_FRAMES:
                self._write_pending()

    def _flush(self) -> None:
        self._flush_handle = None
        self._write_pending()

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending or self._transport is None or self.closed:
            pending.clear()
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._transport.write(data)

    def _check_queue(self) -> None:
        """The strict side gives up on a peer that stops reading while replies pile up for it."""
        if self._strict and self._transport is not None:
            queued = self._transport.get_write_buffer_size() + sum(map(len, self._pending))
            if queued > MAX_QUEUED:
                self._violate(ProtocolViolation(f"stopped reading its channel ({queued} bytes queued for it)"))

    def send(self, ftype: FrameType, stream: int, payload: bytes = b"") -> None:
        if ftype == FrameType.INIT:  # large and sent once: straight to the transport
            if self._transport is None or self.closed:
                raise ConnectionResetError("channel closed")
            self._flush()
            self._transport.write(HEADER.pack(ftype, 0, stream, len(payload)) + payload)
            return
        self._write(HEADER.pack(ftype, 0, stream, len(payload)) + payload)
        if self._strict:
            self._check_queue()

    def send_json(self, ftype: FrameType, stream: int, obj: Any) -> None:
        self.send(ftype, stream, encode_json(obj))

    def send_frames(self, frames: list[tuple[FrameType, int, bytes]]) -> None:
        """Several frames in one write (one syscall for a small response: head, data, end)."""
        self._write(b"".join(HEADER.pack(t, 0, s, len(p)) + p for t, s, p in frames))

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("channel closed")
        if self._write_paused:
            fut = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(fut)
            await fut

    def open_inbound(self, stream: int) -> InboundBody:
        body = InboundBody(lambda n, drained: self._consumed(stream, n, drained))
        self._inbound[stream] = body
        return body

    def close_inbound(self, stream: int, exc: BaseException | None = None) -> None:
        body = self._inbound.pop(stream, None)
        self._unacked.pop(stream, None)
        self._consumed_acc.pop(stream, None)
        if body is not None and exc is not None:
            body.set_exception(exc)  # queued chunks and file reads still come first, then the error
        if body is not None or exc is not None:  # closed early: the peer may still have a window in flight
            self._late_budget += self._window + 4 * FRAME_COST

    def _consumed(self, stream: int, n: int, drained: bool) -> None:
        """Return credit as the consumer reads: in batches, or at once when it has caught up."""
        if stream not in self._inbound or self.closed:
            return
        total = self._consumed_acc.get(stream, 0) + n
        if total >= self._window // 4 or drained:
            self._consumed_acc.pop(stream, None)
            self._unacked[stream] = self._unacked.get(stream, 0) - total
            self.send(FrameType.WINDOW, stream, _CREDIT.pack(total))
        else:
            self._consumed_acc[stream] = total

    def open_outbound(self, stream: int) -> None:
        self._outbound[stream] = _Outbound(self._window)

    def close_outbound(self, stream: int) -> None:
        out = self._outbound.pop(stream, None)
        if out is not None and out.waiter is not None and not out.waiter.done():
            out.waiter.set_exception(ConnectionAbortedError("stream closed"))

    async def send_data(self, stream: int, data: bytes | bytearray | memoryview) -> None:
        """Send a body chunk, waiting for credit and for the transport to drain (backpressure)."""
        view = memoryview(data)
        while view:
            out = await self._credit(stream, FRAME_COST + 1)
            n = min(len(view), out.credit - FRAME_COST, MAX_CHUNK)
            out.credit -= n + FRAME_COST
            if self._transport is None or self.closed:
                raise ConnectionResetError("channel closed")
            if n < 16384:  # a small chunk joins this iteration's write
                self._write(HEADER.pack(FrameType.DATA, 0, stream, n) + bytes(view[:n]))
            else:  # a large one goes out now, after what is queued (no copy into the queue)
                self._flush()
                self._transport.writelines((HEADER.pack(FrameType.DATA, 0, stream, n), view[:n]))
            view = view[n:]
            await self.drain()

    async def send_file(self, stream: int, ref: dict[str, Any]) -> None:
        """Send a FILE reference (``length`` <= MAX_FILE), waiting for FILE_COST of credit."""
        out = await self._credit(stream, FILE_COST)
        out.credit -= FILE_COST
        self.send(FrameType.FILE, stream, encode_json(ref))
        await self.drain()

    async def _credit(self, stream: int, at_least: int) -> _Outbound:
        """The stream's outbound state once it holds ``at_least`` credit (waiting for WINDOW frames)."""
        while True:
            out = self._outbound.get(stream)
            if out is None:
                raise ConnectionAbortedError("stream closed")
            if out.credit >= at_least:
                return out
            out.waiter = asyncio.get_running_loop().create_future()
            try:
                await out.waiter
            finally:
                out.waiter = None

    def end_data(self, stream: int) -> None:
        self._outbound.pop(stream, None)
        self.send(FrameType.END, stream)

    def close(self) -> None:
        if self._transport is not None:
            if not self.closed:
                self._flush()
            self._transport.close()
