"""Worker runtime benchmarks, each against a baseline measured in the same run.

    python bench/runtime.py            # about a minute
    python bench/runtime.py --uvloop   # workers on uvloop (WorkerConfig.event_loop)
    python bench/runtime.py --pin      # this process and its workers on one CPU (WorkerConfig.cpu_affinity)

1. latency p50/p99 of Session.fetch (1 KiB body) vs a raw aiohttp server + client on loopback serving the same bytes
2. req/s at concurrency 64, same pair; plus the per-request overhead over calling the handler in-process
3. streaming 256 MiB out of a worker vs a raw os.pipe copy
4. cold start (first request to a stopped extension) vs `python -c pass`
5. idle worker RSS
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

import protoreg
from bench._common import PAYLOAD, bench_registry, median, pct, row

N_LAT = 2000
N_TPUT = 10000
CONC = 64
STREAM = 256 * 1024 * 1024


async def raw_aiohttp() -> tuple[web.AppRunner, str]:
    async def handle(_req: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/x"


async def latency(fetch) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(200):
        await fetch()
    samples = []
    for _ in range(N_LAT):
        t = time.perf_counter()
        await fetch()
        samples.append((time.perf_counter() - t) * 1e6)
    return samples


async def throughput(fetch) -> float:  # type: ignore[no-untyped-def]
    queue = iter(range(N_TPUT))

    async def worker() -> None:
        for _ in queue:
            await fetch()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONC)))
    return N_TPUT / (time.perf_counter() - t)


def pipe_copy(total: int) -> float:
    r, w = os.pipe()
    chunk = b"p" * 262144

    def writer() -> None:
        sent = 0
        while sent < total:
            sent += os.write(w, chunk)
        os.close(w)

    t = time.perf_counter()
    th = threading.Thread(target=writer)
    th.start()
    got = 0
    while data := os.read(r, 1 << 20):
        got += len(data)
    th.join()
    os.close(r)
    return got / (time.perf_counter() - t) / 2**20


def python_pass() -> float:
    samples = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - t) * 1000)
    return median(samples)


async def main() -> None:
    reg, _ = bench_registry()
    runner, raw_url = await raw_aiohttp()
    options: dict[str, object] = {}
    if "--uvloop" in sys.argv:
        options["event_loop"] = "uvloop"
    if "--pin" in sys.argv:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        options["cpu_affinity"] = frozenset({cpu})
    async with aiohttp.ClientSession() as client, protoreg.Session(reg, **options) as session:  # type: ignore[arg-type]

        async def ours() -> None:
            resp = await session.fetch("web+bench://h/x")
            await resp.read()

        async def raw() -> None:
            async with client.get(raw_url) as r:
                await r.read()

        from bench._common import HANDLER  # the same handler, called in-process
        ns: dict[str, object] = {}
        exec(HANDLER, ns)
        handle = ns["handleRequest"]

        async def inproc() -> None:
            resp = await handle(protoreg.Request("web+bench://h/x"))  # type: ignore[operator]
            assert isinstance(resp.body, bytes)

        print(f"protoreg runtime benchmarks (Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.2f}, options {options or 'none'})\n")
        lat_ours, lat_raw = await latency(ours), await latency(raw)
        print(row("fetch latency p50 (us)", pct(lat_ours, 50), pct(lat_raw, 50), "us"))
        print(row("fetch latency p99 (us)", pct(lat_ours, 99), pct(lat_raw, 99), "us"))
        tput_ours, tput_raw = await throughput(ours), await throughput(raw)
        print(row(f"req/s at concurrency {CONC}", tput_ours, tput_raw, "req/s", "higher"))
        t = time.perf_counter()
        for _ in range(N_TPUT):
            await inproc()
        inproc_us = (time.perf_counter() - t) / N_TPUT * 1e6
        print(f"{'per-request overhead over in-process call':<44} {1e6 / tput_ours - inproc_us:>12.1f} us "
              f"(in-process handler call {inproc_us:.1f} us)")

        t = time.perf_counter()
        resp = await session.fetch(f"web+bench://h/stream?size={STREAM}")
        got = 0
        async for chunk in resp.stream():
            got += len(chunk)
        assert got == STREAM
        ours_mib = STREAM / (time.perf_counter() - t) / 2**20
        print(row("stream 256 MiB out of a worker (MiB/s)", ours_mib, pipe_copy(STREAM), "MiB/s", "higher"))

        base_ms = python_pass()
        colds = []
        for _ in range(7):
            await session.workers.close()
            session.workers.__init__(reg, session.config)  # type: ignore[misc]
            await session.workers.start()
            await asyncio.sleep(0.5)  # the warm spare is up, as in a running host
            t = time.perf_counter()
            await (await session.fetch("web+bench://h/x")).read()
            colds.append((time.perf_counter() - t) * 1000)
        print(row("cold start, first request (ms)", median(colds), base_ms, "ms") + "  [baseline: python -c pass]")
        await asyncio.sleep(1.0)
        rss = [w.rss() for w in session.workers.workers()]
        print(f"{'idle worker RSS':<44} {max(r or 0 for r in rss) / 2**20:>12.1f} MiB (goal <= 25 MiB)")
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
