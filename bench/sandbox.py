"""Sandbox overhead: cold start and request latency of a sandboxed worker vs an unsandboxed one, same run.

    python bench/sandbox.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import protoreg
from bench._common import bench_registry, median, pct

N = 2000
COLD = 9


async def measure(reg: protoreg.Registry, sandbox: dict | None) -> tuple[float, float, float]:
    config = protoreg.WorkerConfig(sandbox=sandbox)
    colds = []
    for _ in range(COLD):
        async with protoreg.Session(reg, config) as session:
            await asyncio.sleep(0.4)  # the warm spare is up, as in a running host
            t = time.perf_counter()
            await (await session.fetch("web+bench://h/x")).read()
            colds.append((time.perf_counter() - t) * 1000)
    async with protoreg.Session(reg, config) as session:
        for _ in range(200):
            await (await session.fetch("web+bench://h/x")).read()
        lat = []
        for _ in range(N):
            t = time.perf_counter()
            await (await session.fetch("web+bench://h/x")).read()
            lat.append((time.perf_counter() - t) * 1e6)
    return median(colds), pct(lat, 50), pct(lat, 99)


async def main() -> None:
    reg, _ = bench_registry()
    off = await measure(reg, None)
    on = await measure(reg, {})
    for i, name in enumerate(("cold start, first request (ms)", "latency p50 (us)", "latency p99 (us)")):
        print(f"{name:<34} sandboxed {on[i]:9.1f}   unsandboxed {off[i]:9.1f}   ratio {on[i] / off[i]:5.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
