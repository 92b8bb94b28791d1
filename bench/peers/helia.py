"""protoreg vs Helia reading the same 64 MiB UnixFS file, in one run.

Builds the file with protoreg's importer (kubo's defaults: CIDv1, raw 256 KiB leaves, 174 links per node) into the
ipfs handler's block store and exports the same blocks as a CAR. Then, one after the other:

- ours: ``Session.fetch("ipfs://<cid>/")``, the body read fully: every block read from disk and sha256-verified in
  the sandboxed worker, streamed to this process over IPC (as bench/ipfs_read.py);
- Helia: ``@helia/verified-fetch`` in Node, the CAR loaded into an in-memory blockstore, no libp2p, no routers, no
  block brokers (helia_read.mjs). Helia trusts its own blockstore, so this reads without hashing;
- Helia-verifying: the same with a blockstore that sha256-hashes every block it hands out (once per read) and checks
  it against the CID, which is what protoreg does on every read.

Each side: one warm-up read, then three timed reads (BENCH_REPS); best and median MiB/s. Goal: ours >= 1.5x Helia.
Needs Node >= 20 and npm; ``npm ci`` runs in bench/peers on the first use.

    python bench/peers/helia.py            # BENCH_MIB=16 for a quicker run, BENCH_REPS=8 for more timed reads
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import protoreg
from tests.handlers.ipfs.helpers import IPFS_BUNDLE, ipfs_core, store_for

HERE = Path(__file__).resolve().parent
SIZE = int(os.environ.get("BENCH_MIB", "64")) * 1024 * 1024
REPS = int(os.environ.get("BENCH_REPS", "3"))
GOAL = 1.5


def ensure_node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        sys.exit(f"bench/peers/helia.py needs Node.js (>= 20) and npm on PATH; {missing} not found. "
                 "Install them (e.g. your distribution's nodejs and npm packages) and rerun.")
    if not (HERE / "node_modules").is_dir():
        print("installing the pinned Node packages (npm ci in bench/peers) ...", file=sys.stderr)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE)
        if done.returncode != 0:
            sys.exit(f"npm ci failed in {HERE} (exit {done.returncode})")
    return node


def build(state: Path, car: Path) -> tuple[protoreg.Registry, str, str]:
    """The random file into the handler's store and the same blocks into a CAR; (registry, CID, sha256 hex)."""
    core = ipfs_core()
    data = os.urandom(SIZE)
    reg = protoreg.Registry()
    store = store_for(reg.install(IPFS_BUNDLE), state)
    blocks = []

    def emit(cid, block: bytes) -> None:
        store.put(cid, block)
        blocks.append((cid, block))

    built = core.importer.add_file(io.BytesIO(data), emit)
    with open(car, "wb") as f:
        for part in core.car.write_car([built.cid], blocks):
            f.write(part)
    return reg, core.cids.v1_base32(built.cid), hashlib.sha256(data).hexdigest()


async def ours(reg: protoreg.Registry, state: Path, cid: str) -> list[float]:
    times = []
    async with protoreg.Session(reg, state_dir=str(state)) as session:
        for i in range(REPS + 1):  # the first is the warm-up (it also starts the worker)
            t = time.perf_counter()
            resp = await session.fetch(f"ipfs://{cid}/")
            got = 0
            async for chunk in resp.stream():
                got += len(chunk)
            elapsed = time.perf_counter() - t
            assert got == SIZE, got
            if i:
                times.append(elapsed)
    return times


def helia(node: str, car: Path, cid: str, digest: str, verify: bool) -> dict:
    cmd = [node, str(HERE / "helia_read.mjs"), str(car), "--reps", str(REPS)] + (["--verify"] if verify else [])
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"helia_read.mjs failed (exit {done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["root"] != cid or result["bytes"] != SIZE or result["body_sha256"] != digest:
        sys.exit(f"Helia read something else: root {result['root']}, {result['bytes']} bytes, "
                 f"sha256 {result['body_sha256']} (expected {cid}, {SIZE}, {digest})")
    return result


def rates(times: list[float]) -> tuple[float, float]:
    mib = SIZE / 2**20
    return mib / min(times), mib / statistics.median(times)


def main() -> None:
    node = ensure_node()
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="protoreg-bench-peers-"))
    try:
        state, car = root / "state", root / "file.car"
        reg, cid, digest = build(state, car)
        load = os.getloadavg()
        ours_best, ours_med = rates(asyncio.run(ours(reg, state, cid)))
        plain = helia(node, car, cid, digest, verify=False)
        checked = helia(node, car, cid, digest, verify=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mib = SIZE // 2**20
    print(f"{mib} MiB UnixFS file ({plain['blocks']} blocks, the same on both sides); Node {version}; "
          f"best / median of {REPS} after a warm-up; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = [("ours: Session.fetch (every block verified)", ours_best, ours_med)]
    for label, r in (("Helia verified-fetch (local blocks unhashed)", plain),
                     ("Helia verified-fetch, verifying blockstore", checked)):
        rows.append((label, r["best_mib_s"], r["median_mib_s"]))
    for label, best, med in rows:
        print(f"{label:<46} {best:8.1f} MiB/s best {med:8.1f} MiB/s median")
    print(f"{'':<46} (the verifying blockstore hashed {checked['blocks_hashed_per_read']:.0f} blocks per read, "
          f"of {checked['block_gets_per_read']:.0f} gets)")
    for label, r in (("Helia", plain), ("Helia-verifying", checked)):
        print(f"{'ratio ours / ' + label:<46} {ours_best / r['best_mib_s']:8.2f}x best "
              f"{ours_med / r['median_mib_s']:8.2f}x median   (goal >= {GOAL})")


if __name__ == "__main__":
    main()
