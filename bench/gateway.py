"""Gateway req/s vs a plain aiohttp app returning the same bytes, with the load from a separate process.

    python bench/gateway.py [--uvloop] [--pin]

The main row is a handler answer that may not be cached (every request reaches the worker); a second row asks
for one the handler marks immutable, which the parent answers from its response cache after the first time.

Both servers run in this process on loopback, one after the other; a load generator (an aiohttp client at
concurrency 32 in its own process, so its CPU is not charged to the server) sends N requests to each and reports
req/s. ``--uvloop`` runs this process's event loop (both servers) on uvloop. ``--pin`` puts this process (both
servers) and the gateway's worker on CPU 0 (``WorkerConfig.cpu_affinity``), leaving the load generator free to run
anywhere: the parent's wake-up of its worker then stays on one CPU.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web
from yarl import URL

from bench._common import PAYLOAD, bench_registry, row
from protoreg.gateway import create_app
from protoreg.gateway.app import SESSION
from protoreg.gateway.hosts import to_gateway_url
from protoreg.loops import tune_gc
from protoreg.worker.config import WorkerConfig

N = 20000
CONC = 32

LOAD = """
import asyncio, sys, time
import aiohttp
port, host, path = int(sys.argv[1]), sys.argv[2], sys.argv[6]
n, conc, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as client:
        async def run(count):
            it = iter(range(count))
            async def worker():
                for _ in it:
                    async with client.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as r:
                        body = await r.read()
                        assert r.status == 200 and len(body) == size, (r.status, body[:200])
            await asyncio.gather(*(worker() for _ in range(conc)))
        await run(n // 10)  # warm-up: connections, worker process, caches
        t = time.perf_counter()
        await run(n)
        print(n / (time.perf_counter() - t))
asyncio.run(main())
"""


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process plus ``pids`` (the gateway's workers), user + system."""
    t = os.times()
    total = t.user + t.system
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


ALL_CPUS = frozenset(os.sched_getaffinity(0))


async def load(port: int, host: str, path: str = "/x") -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOAD, str(port), host, str(N), str(CONC), str(len(PAYLOAD)), path,
        stdout=subprocess.PIPE, preexec_fn=lambda: os.sched_setaffinity(0, ALL_CPUS))
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the load generator failed (exit {proc.returncode})")
    return float(out)


async def main() -> None:
    reg, _ = bench_registry()

    async def plain(_req: web.Request) -> web.Response:
        return web.Response(body=PAYLOAD, content_type="application/octet-stream")

    plain_app = web.Application()
    plain_app.router.add_get("/{tail:.*}", plain)
    r1, p1 = await serve(plain_app)
    pin = "--pin" in sys.argv
    if pin:
        os.sched_setaffinity(0, {min(ALL_CPUS)})
    config = WorkerConfig(cpu_affinity=frozenset({min(ALL_CPUS)})) if pin else None
    r2, p2 = await serve(create_app(reg, config=config))
    tune_gc()  # what protoreg serve does after start-up (protoreg/loops.py)
    owner = reg.lookup("web+bench").extension.id
    host = to_gateway_url(URL("web+bench://h/x"), f"localhost:{p2}", owner).raw_host
    loop_name = "uvloop" if "--uvloop" in sys.argv else "asyncio"
    print(f"gateway benchmark (Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}, {loop_name}{', pinned to one CPU' if pin else ''})\n")
    c0 = cpu_seconds([])
    base = await load(p1, f"127.0.0.1:{p1}")
    c1 = cpu_seconds([])
    session = r2.app[SESSION]
    await load(p2, f"{host}:{p2}")  # starts the worker, warms everything
    pids = [w.pid for w in session.workers.workers()]
    c2 = cpu_seconds(pids)
    ours = await load(p2, f"{host}:{p2}")
    c3 = cpu_seconds(pids)
    cached = await load(p2, f"{host}:{p2}", "/immutable")
    c4 = cpu_seconds(pids)
    runs = N * 1.1
    print(row("gateway req/s vs plain aiohttp app", ours, base, "req/s", "higher") + "  (goal >= 0.8)")
    print(row("server CPU per request (gateway + worker)", (c3 - c2) / runs * 1e6, (c1 - c0) / runs * 1e6, "us"))
    print(row("gateway req/s, an immutable answer (cache)", cached, base, "req/s", "higher") +
          f"  ({session.cache.hits if session.cache else 0} hits)")
    print(row("server CPU per request, immutable answer", (c4 - c3) / runs * 1e6, (c1 - c0) / runs * 1e6, "us"))
    print("(req/s is bounded by the load generator when the ratio is near 1; CPU per request is the server's cost)")
    await r2.cleanup()
    await r1.cleanup()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main())
