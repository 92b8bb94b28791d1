"""Streaming through a worker in both directions without buffering whole bodies."""

from __future__ import annotations

import asyncio
import hashlib

import psutil

from tests.worker.conftest import head

CHUNK = 256 * 1024
TOTAL = 256 * 1024 * 1024


async def test_256_mib_streams_both_ways_while_parent_rss_grows_under_64_mib(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        from protoreg import Response
        async def handleRequest(request):
            async def echo():
                async for chunk in request.stream():
                    yield chunk
            return Response(echo())
    """)
    me = psutil.Process()
    sent = hashlib.sha256()
    blocks = [bytes([i]) * CHUNK for i in range(8)]

    async def upload():
        for i in range(TOTAL // CHUNK):
            block = blocks[i % 8]
            sent.update(block)
            yield block

    peak = base = me.memory_info().rss

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, me.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    st = await m.dispatch(ext, head("web+t://h/echo", "POST"), upload())
    status, _ = await st.head
    received, got = 0, hashlib.sha256()
    async for chunk in st.body:
        received += len(chunk)
        got.update(chunk)
    sampler.cancel()
    assert status == 200
    assert received == TOTAL
    assert got.hexdigest() == sent.hexdigest()
    assert peak - base < 64 * 1024 * 1024, f"parent RSS grew by {(peak - base) / 2**20:.1f} MiB"


async def test_slow_reader_applies_backpressure_to_the_handler(manager, make_bundle):
    m = await manager(window=256 * 1024)
    ext = make_bundle("""
        from protoreg import Response
        produced = {"n": 0}
        async def handleRequest(request):
            if request.url.path == "/count":
                return Response(str(produced["n"]))
            async def gen():
                while True:
                    produced["n"] += 1
                    yield b"y" * 65536
            return Response(gen())
    """)
    st = await m.dispatch(ext, head("web+t://h/gen"), None)
    await st.head
    await st.body.__anext__()
    await asyncio.sleep(0.5)  # we read one chunk; the producer must stall at the window, not run ahead
    check = await m.dispatch(ext, head("web+t://h/count"), None)
    await check.head
    produced = int(b"".join([c async for c in check.body]))
    assert produced <= 256 * 1024 // 65536 + 2
    st.abort()
