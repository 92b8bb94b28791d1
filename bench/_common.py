"""Shared helpers for the benchmarks: a throwaway extension and percentile maths."""

from __future__ import annotations

import json
import statistics
import tempfile
import textwrap
from pathlib import Path

import protoreg

PAYLOAD = b"x" * 1024

HANDLER = """
from protoreg import Response
PAYLOAD = b"x" * 1024

async def handleRequest(request):
    if request.url.path == "/stream":
        size = int(request.url.query.get("size", "0"))
        chunk = b"s" * 262144
        async def gen():
            sent = 0
            while sent < size:
                n = min(len(chunk), size - sent)
                yield chunk if n == len(chunk) else chunk[:n]
                sent += n
        return Response(gen())
    if request.url.path == "/immutable":  # answered by the parent's cache after the first time (protoreg/cache.py)
        return Response(PAYLOAD, headers={"Content-Type": "application/octet-stream",
                                          "Cache-Control": "public, max-age=3600, immutable"})
    return Response(PAYLOAD, headers={"Content-Type": "application/octet-stream"})
"""


def bench_registry() -> tuple[protoreg.Registry, Path]:
    root = Path(tempfile.mkdtemp(prefix="protoreg-bench-"))
    (root / "handler.py").write_text(textwrap.dedent(HANDLER))
    (root / "manifest.json").write_text(json.dumps({
        "name": "bench", "version": "1.0", "browser_specific_settings": {"gecko": {"id": "bench@local"}},
        "protocol_handlers": [{"protocol": "web+bench", "name": "bench", "uriHandlerScript": "handler.py"}]}))
    reg = protoreg.Registry()
    reg.install(root)
    return reg, root


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def row(name: str, ours: float, base: float, unit: str, better: str = "lower") -> str:
    ratio = ours / base if base else float("nan")
    return f"{name:<44} {ours:>12.1f} {unit:<6} baseline {base:>12.1f} {unit:<6} ratio {ratio:6.2f}x ({better} is better)"
