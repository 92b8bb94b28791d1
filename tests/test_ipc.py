"""protoreg/ipc.py: write coalescing, strict control-frame decoding, the complete-body fast path."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protoreg.ipc import (
    FLUSH_FRAMES,
    FRAME_COST,
    HEADER,
    Channel,
    FrameType,
    ProtocolViolation,
    decode_json,
    encode_head,
)


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    out, offset = [], 0
    while offset < len(data):
        ftype, _flags, stream, length = HEADER.unpack_from(data, offset)
        offset += HEADER.size
        out.append((ftype, stream, bytes(data[offset:offset + length])))
        offset += length
    return out


async def _pair() -> tuple[Channel, _Recorder, list[bytes]]:
    """A Channel whose transport records each write, connected to a recorder over a real socketpair."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    _t, channel = await loop.create_unix_connection(lambda: Channel(lambda *_: None, lambda _e: None), sock=a)
    _t2, peer = await loop.create_unix_connection(_Recorder, sock=b)
    writes: list[bytes] = []
    transport = channel._transport
    real_write = transport.write

    def write(data: bytes) -> None:
        writes.append(bytes(data))
        real_write(data)

    transport.write = write  # type: ignore[method-assign]
    return channel, peer, writes


async def test_frames_of_one_loop_iteration_leave_in_few_writes_in_order():
    channel, peer, writes = await _pair()
    for sid in range(1, 65):
        channel.send(FrameType.REQUEST, sid, encode_head({"n": sid}))
    # the first went out at once (a lone request pays no extra latency), the rest FLUSH_FRAMES at a time: a sender
    # that never yields (FILE references of a whole file) must not hold back what the peer could start on
    assert len(writes) == 1 + 63 // FLUSH_FRAMES
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(writes) == 2 + 63 // FLUSH_FRAMES  # what was left, together at the end of the iteration
    for _ in range(100):
        if len(peer.data) >= sum(map(len, writes)):
            break
        await asyncio.sleep(0.01)
    frames = _frames(bytes(peer.data))
    assert [s for _t, s, _p in frames] == list(range(1, 65))
    assert decode_json(frames[-1][2]) == {"n": 64}
    channel.close()


async def test_a_large_data_chunk_goes_after_the_queued_frames():
    channel, peer, _writes = await _pair()
    channel.send(FrameType.RESPONSE, 1, b"{}")
    channel.send(FrameType.RESPONSE, 2, b"{}")  # queued
    channel.open_outbound(2)
    await channel.send_data(2, b"x" * 100_000)  # flushes what is queued first, then writes directly
    channel.end_data(2)
    for _ in range(200):
        if len(peer.data) >= 2 * (HEADER.size + 2) + HEADER.size + 100_000 + HEADER.size:
            break
        await asyncio.sleep(0.01)
    kinds = [(t, s, len(p)) for t, s, p in _frames(bytes(peer.data))]
    assert kinds == [(FrameType.RESPONSE, 1, 2), (FrameType.RESPONSE, 2, 2), (FrameType.DATA, 2, 100_000),
                     (FrameType.END, 2, 0)]
    channel.close()


async def test_close_sends_what_is_queued():
    channel, peer, _writes = await _pair()
    channel.send(FrameType.PING, 0, b"a")
    channel.send(FrameType.PING, 0, b"b")
    channel.close()
    for _ in range(100):
        if len(peer.data) >= 2 * (HEADER.size + 1):
            break
        await asyncio.sleep(0.01)
    assert [p for _t, _s, p in _frames(bytes(peer.data))] == [b"a", b"b"]


@pytest.mark.parametrize("payload", [b'{"a":NaN}', b'{"a":"\\udcff"}', b"\xff", b"[1]", b'{"a":1e999}'])
def test_control_frames_are_strict_json_objects(payload):
    from protoreg.ipc import use_msgspec

    use_msgspec()  # the parent's codec (protoreg.worker.process switches to it): this test alone did not
    with pytest.raises(ProtocolViolation):
        decode_json(payload)


def test_heads_encode_str_subclasses_and_refuse_lone_surrogates():
    from multidict import istr

    assert decode_json(encode_head({"headers": [[istr("X-A"), "b"]]})) == {"headers": [["X-A", "b"]]}
    with pytest.raises(UnicodeEncodeError):
        encode_head({"url": "web+a://x/\udcff"})


async def test_a_complete_body_is_taken_at_once_and_returns_its_credit():
    returned = []
    from protoreg.ipc import InboundBody

    body = InboundBody(lambda n, drained: returned.append((n, drained)))
    body.feed(b"ab")
    body.feed(b"cd")
    body.feed_eof()
    assert body.complete
    assert body.take_all() == b"abcd"
    assert returned == [(4 + 2 * FRAME_COST, True)]
    assert body.finished


# -- FILE frames: body bytes by reference (the parent reads and verifies; protoreg/worker/files.py) --------------
class _Transport:
    def __init__(self) -> None:
        self.aborted = False
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, parts) -> None:
        for p in parts:
            self.out += p

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def _strict(window: int = 2 << 20) -> tuple[Channel, list]:
    violations: list = []
    channel = Channel(lambda *_: None, lambda _e: None, strict=True, window=window, on_violation=violations.append)
    channel.connection_made(_Transport())
    channel.max_stream = 1
    return channel, violations


def _file_frame(stream: int, **ref) -> bytes:
    import json

    payload = json.dumps({"path": "f", "sha256": "0" * 64, "offset": 0, "length": 10, **ref}).encode()
    return HEADER.pack(FrameType.FILE, 0, stream, len(payload)) + payload


@pytest.mark.parametrize(("ref", "why"), [
    ({"sha256": "ABC"}, "hex sha256"),
    ({"path": 7}, "relative path"),
    ({"length": 0}, "at most"),
    ({"length": (1 << 20) + 1}, "at most"),
    ({"offset": -1}, "at most"),
    ({"offset": True}, "at most"),
])
async def test_a_malformed_file_frame_is_a_violation(ref, why):
    channel, violations = _strict()
    body = channel.open_inbound(1)
    body.resolve = lambda r: asyncio.sleep(0, b"")
    channel.data_received(_file_frame(1, **ref))
    assert violations and why in str(violations[0])


async def test_a_file_frame_where_no_file_may_be_named_is_a_violation():
    channel, violations = _strict()
    channel.open_inbound(1)  # no resolver: e.g. an extension without a data dir
    channel.data_received(_file_frame(1))
    assert "takes no file references" in str(violations[0])


async def test_file_references_are_read_at_most_read_ahead_in_front_of_the_consumer_and_in_order():
    from protoreg.ipc import READ_AHEAD

    channel, violations = _strict()
    body = channel.open_inbound(1)
    running, peak, gates = [0], [0], {}

    async def resolve(ref):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        gates[ref["path"]] = asyncio.get_running_loop().create_future()
        await gates[ref["path"]]
        running[0] -= 1
        return ref["path"].encode()

    body.resolve = resolve
    for n in range(40):  # 40 references, far more than the read-ahead
        channel.data_received(_file_frame(1, path=f"f{n}"))
    await asyncio.sleep(0)
    assert not violations and running[0] == READ_AHEAD
    out = []
    for _ in range(40):
        nxt = asyncio.ensure_future(body.next_chunk())
        await asyncio.sleep(0)
        for g in gates.values():
            if not g.done():
                g.set_result(None)
        out.append(await nxt)
        assert running[0] <= READ_AHEAD
    assert out == [f"f{i}".encode() for i in range(40)] and peak[0] == READ_AHEAD
    assert not violations  # 40 references within one window: no credit round trip per block


async def test_file_references_past_the_window_are_a_violation():
    from protoreg.ipc import FILE_COST

    channel, violations = _strict(window=8 * FILE_COST)
    body = channel.open_inbound(1)
    body.resolve = lambda r: asyncio.sleep(0, b"x")
    for i in range(9):
        channel.data_received(_file_frame(1, path=f"f{i}"))
    assert violations and "past its" in str(violations[0])
    await asyncio.sleep(0.01)


async def test_an_error_after_file_references_comes_after_their_bytes():
    channel, _ = _strict()
    body = channel.open_inbound(1)
    body.resolve = lambda r: asyncio.sleep(0.01, r["path"].encode())
    channel.data_received(_file_frame(1, path="a") + _file_frame(1, path="b"))
    channel.close_inbound(1, RuntimeError("handler failed"))
    assert await body.next_chunk() == b"a"
    assert await body.next_chunk() == b"b"
    with pytest.raises(RuntimeError, match="handler failed"):
        await body.next_chunk()


# -- the reused read buffer (Channel is a BufferedProtocol) -----------------------------------------------------
def _recording_channel() -> tuple[Channel, list[tuple[int, int, bytes]]]:
    got: list[tuple[int, int, bytes]] = []
    channel = Channel(lambda t, s, p: got.append((t, s, p)), lambda _e: None, max_frame=1 << 20)
    return channel, got


@pytest.mark.parametrize("split", [1, 7, 4096, 65536, 300_000, 10_000_000])
def test_frames_cut_anywhere_across_reads_arrive_whole_and_in_order(split):
    import random

    rng = random.Random(split)
    sizes = [0, 5, 300] if split < 100 else [0, 5, 70_000, 262_144, 600_000]
    frames = [(FrameType.HELLO, sid, rng.randbytes(rng.choice(sizes))) for sid in range(1, 40)]
    data = b"".join(HEADER.pack(t, 0, s, len(p)) + p for t, s, p in frames)
    channel, got = _recording_channel()
    for i in range(0, len(data), split):
        channel.data_received(data[i:i + split])
    assert got == frames
    assert channel._rstart == channel._rend == 0  # nothing left over, the buffer is reused from its start
    assert len(channel._rbuf) < 2 << 20  # grown at most to hold the largest frame


async def test_the_transport_reads_into_one_reused_buffer():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    got: list[tuple[int, int, bytes]] = []
    _t, channel = await loop.create_unix_connection(
        lambda: Channel(lambda t, s, p: got.append((t, s, p)), lambda _e: None), sock=a)
    buffers: set[int] = set()
    get_buffer = channel.get_buffer
    channel.get_buffer = lambda hint: (buffers.add(id(channel._rbuf)), get_buffer(hint))[1]  # type: ignore[method-assign]
    payloads = [bytes([i]) * (i * 997) for i in range(1, 200)]
    b.setblocking(False)
    writer_t, _ = await loop.create_unix_connection(asyncio.Protocol, sock=b)
    for i, p in enumerate(payloads, 1):
        writer_t.write(HEADER.pack(FrameType.HELLO, 0, i, len(p)) + p)
        if i % 17 == 0:
            await asyncio.sleep(0)
    for _ in range(200):
        if len(got) == len(payloads):
            break
        await asyncio.sleep(0.01)
    assert [p for _t, _s, p in got] == payloads
    assert len(buffers) == 1  # the transport used get_buffer (recv_into), always into the same bytearray
    writer_t.close()
    _t.close()


async def test_while_others_are_in_flight_the_first_frame_waits_for_the_iteration():
    channel, _peer, writes = await _pair()
    channel.busy = lambda: True  # the owner has other requests in flight
    for sid in range(1, 4):
        channel.send(FrameType.REQUEST, sid, encode_head({"n": sid}))
    assert writes == []  # nothing yet: the three leave together, waking the peer once
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(writes) == 1 and [s for _t, s, _p in _frames(writes[0])] == [1, 2, 3]
    channel.busy = lambda: False  # a lone request leaves at once
    channel.send(FrameType.REQUEST, 4, encode_head({"n": 4}))
    assert len(writes) == 2
    channel.close()


async def test_a_worker_handle_reports_busy_only_with_other_requests_in_flight():
    from protoreg.worker.config import WorkerConfig
    from protoreg.worker.process import WorkerProcess

    worker = await WorkerProcess.spawn(WorkerConfig(sandbox=None))
    try:
        busy = worker.channel.busy
        assert busy is not None and not busy()
        worker._streams[1] = object()  # type: ignore[assignment]
        assert not busy()  # the request being sent is not "another"
        worker._streams[2] = object()  # type: ignore[assignment]
        assert busy()
    finally:
        worker._streams.clear()
        await worker.stop()
