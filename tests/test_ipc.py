"""protoreg/ipc.py: write coalescing, strict control-frame decoding, the complete-body fast path."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protoreg.ipc import (
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


async def test_frames_of_one_loop_iteration_leave_in_two_writes_in_order():
    channel, peer, writes = await _pair()
    for sid in range(1, 65):
        channel.send(FrameType.REQUEST, sid, encode_head({"n": sid}))
    assert len(writes) == 1  # the first went out at once: a lone request pays no extra latency
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(writes) == 2  # the other 63 together at the end of the iteration
    for _ in range(100):
        if len(peer.data) >= sum(map(len, writes)):
            break
        await asyncio.sleep(0.01)
    frames = _frames(bytes(peer.data))
    assert [s for _t, s, _p in frames] == list(range(1, 65))
    assert decode_json(frames[-1][2]) == {"n": 64}
    channel.close()


async def test_a_large_data_chunk_goes_after_the_queued_frames():
    channel, peer, writes = await _pair()
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
