"""Gateway req/s vs a plain aiohttp app returning the same bytes in-process, measured in one run.

    python bench/gateway.py

Both servers run in this process on loopback and are loaded by the same aiohttp client at concurrency 32.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

from bench._common import PAYLOAD, bench_registry
from protoreg.gateway import create_app

N = 4000
CONC = 32


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def load(port: int, host: str) -> float:
    it = iter(range(N))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONC)) as client:
        async def worker() -> None:
            for _ in it:
                async with client.get(f"http://127.0.0.1:{port}/x", headers={"Host": host}) as r:
                    body = await r.read()
                    assert r.status == 200 and body == PAYLOAD, r.status
        await asyncio.gather(*(worker() for _ in range(4)))  # warm-up share of the iterator
        it = iter(range(N))
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONC)))
        return N / (time.perf_counter() - t)


async def main() -> None:
    reg, _ = bench_registry()

    async def plain(_req: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD, content_type="application/octet-stream")

    plain_app = web.Application()
    plain_app.router.add_get("/{tail:.*}", plain)
    r1, p1 = await serve(plain_app)
    r2, p2 = await serve(create_app(reg))
    base = await load(p1, f"127.0.0.1:{p1}")
    ours = await load(p2, f"h.web-bench.localhost:{p2}")
    print(f"{'plain aiohttp app (in-process bytes)':<44} {base:>10,.0f} req/s")
    print(f"{'protoreg gateway (worker process, policy)':<44} {ours:>10,.0f} req/s   ratio {ours / base:.2f}x "
          "(goal >= 0.7)")
    await r2.cleanup()
    await r1.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
