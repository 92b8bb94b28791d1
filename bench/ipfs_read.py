"""Read a 64 MiB UnixFS file through Session.fetch (hash-verified, sandboxed worker) vs hashlib.sha256 over the
same bytes in this process, measured in one run. Goal: >= 0.6x, verification being the bound.

    python bench/ipfs_read.py
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import protoreg
from tests.handlers.ipfs.helpers import IPFS_BUNDLE, ipfs_core, store_for

SIZE = 64 * 1024 * 1024


async def main() -> None:
    core = ipfs_core()
    data = os.urandom(SIZE)
    state = Path(tempfile.mkdtemp(prefix="protoreg-bench-ipfs-"))
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    store = store_for(ext, state)
    built = core.importer.add_file(io.BytesIO(data), store.put)
    cid = core.cids.v1_base32(built.cid)
    os.sync()  # the import's 64 MiB of dirty pages are written back now, not during the timed reads
    best_hash = 0.0
    for _ in range(3):
        t = time.perf_counter()
        hashlib.sha256(data).digest()
        best_hash = max(best_hash, SIZE / (time.perf_counter() - t) / 2**20)
    async with protoreg.Session(reg, state_dir=str(state)) as session:
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            resp = await session.fetch(f"ipfs://{cid}/")
            got = 0
            async for chunk in resp.stream():
                got += len(chunk)
            assert got == SIZE
            best = max(best, SIZE / (time.perf_counter() - t) / 2**20)
    print(f"{'ipfs:// 64 MiB through Session.fetch':<40} {best:8.1f} MiB/s")
    print(f"{'hashlib.sha256 over the same bytes':<40} {best_hash:8.1f} MiB/s   ratio {best / best_hash:.2f}x "
          "(goal >= 0.6)")


if __name__ == "__main__":
    asyncio.run(main())
