"""A 64 MiB UnixFS file read through a second gateway that holds nothing and fetches every block from a first one on
loopback (one streamed, verified CAR through the broker), next to reading it from the first gateway's local store,
in one run. Each gateway runs in its own process, as it would in production; this process is only the client.
Goal: >= 0.5x local.

    python bench/retrieval.py            # BENCH_MIB=16 for a quicker run
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web
from yarl import URL

import protoreg
from protoreg.gateway import create_app
from protoreg.gateway.hosts import to_gateway_url
from protoreg.worker.config import WorkerConfig
from tests.handlers.ipfs.helpers import IPFS_BUNDLE, data_dir_for, ipfs_core, store_for

SIZE = int(os.environ.get("BENCH_MIB", "64")) * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(state: Path, port: int) -> None:
    """The child: one gateway on 127.0.0.1:port until killed."""
    reg = protoreg.Registry()
    reg.install(IPFS_BUNDLE)
    app = create_app(reg, config=WorkerConfig(state_dir=str(state), allow_networks=("127.0.0.0/8",)))
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def spawn(state: Path, port: int) -> tuple[asyncio.subprocess.Process, protoreg.Registry]:
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(state), str(port))
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    reg = protoreg.Registry()
    reg.install(IPFS_BUNDLE)
    return proc, reg


async def stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await proc.wait()


async def start(state: Path, port: int) -> tuple[web.AppRunner, protoreg.Registry]:
    reg = protoreg.Registry()
    reg.install(IPFS_BUNDLE)
    runner = web.AppRunner(create_app(reg, config=WorkerConfig(state_dir=str(state),
                                                               allow_networks=("127.0.0.0/8",))))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, reg


async def read(http: aiohttp.ClientSession, reg: protoreg.Registry, port: int, cid: str,
               size: int | None = None) -> float:
    u = to_gateway_url(URL(f"ipfs://{cid}/"), f"localhost:{port}", reg.lookup("ipfs").extension.id)
    t = time.perf_counter()
    got = 0
    async with http.get(f"http://127.0.0.1:{port}{u.raw_path_qs}", headers={"Host": u.raw_authority}) as r:
        assert r.status == 200, r.status
        async for chunk in r.content.iter_any():
            got += len(chunk)
    assert got == (SIZE if size is None else size), got
    return time.perf_counter() - t


async def main() -> None:
    core = ipfs_core()
    data = os.urandom(SIZE)
    root = Path(tempfile.mkdtemp(prefix="protoreg-bench-retrieval-"))
    a_state, a_port, b_port = root / "a", free_port(), free_port()
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    cid = core.cids.v1_base32(core.importer.add_file(io.BytesIO(data), store_for(ext, a_state).put).cid)
    small = [core.cids.v1_base32(core.importer.add_file(io.BytesIO(os.urandom(8192)), store_for(ext, a_state).put).cid)
             for _ in range(20)]
    miss, hit = [], []
    a, a_reg = await spawn(a_state, a_port)
    local, remote = [], []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                local.append(await read(http, a_reg, a_port, cid))
                b_state = root / f"b{i}"  # a new, empty second gateway each time: every block crosses
                d = data_dir_for(ext, b_state)
                d.mkdir(parents=True, exist_ok=True)
                (d / "settings.json").write_text(json.dumps({"upstreams": [f"http://127.0.0.1:{a_port}"]}))
                b, b_reg = await spawn(b_state, b_port)
                try:
                    remote.append(await read(http, b_reg, b_port, cid))
                    warm = await read(http, b_reg, b_port, cid)
                    if i == 0:
                        for s_cid in small:  # an 8 KiB file: one block, first a miss, then a hit
                            miss.append(await read(http, b_reg, b_port, s_cid, 8192))
                            hit.append(await read(http, b_reg, b_port, s_cid, 8192))
                finally:
                    await stop(b)
    finally:
        await stop(a)
        shutil.rmtree(root, ignore_errors=True)
    mib = SIZE / 2**20
    ours, base = mib / min(remote), mib / min(local)
    print(f"{f'{mib:.0f} MiB via 2nd gateway, cold (all blocks)':<44} {ours:8.1f} MiB/s")
    print(f"{f'{mib:.0f} MiB from the 1st gateway, local store':<44} {base:8.1f} MiB/s   "
          f"ratio {ours / base:.2f}x (goal >= 0.5)")
    print(f"{f'{mib:.0f} MiB via 2nd gateway, warm (now local)':<44} {mib / warm:8.1f} MiB/s")
    miss.sort()
    hit.sort()
    print(f"{'8 KiB file via 2nd gateway: miss p50':<44} {miss[len(miss) // 2] * 1000:8.1f} ms   "
          f"hit p50 {hit[len(hit) // 2] * 1000:.1f} ms")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        asyncio.run(main())
