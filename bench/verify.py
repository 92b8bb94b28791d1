"""Verifying an installed signed bundle at profile load, next to hashlib.sha256 of the same bytes, in one run.

    python bench/verify.py

The bundle: manifest.json + 20 Python files, 1 MiB in total, published to a real store (Ed25519, TUF) and installed
in a real profile. "ours" is Profile.verify(id): read every file once, check each file's sha256 and size against
the index, recompute the bundle's signed sha256, and validate the manifest (what profile.registry() does per
extension before any code runs). The baseline is one hashlib.sha256 over the same 1 MiB already in memory.
Goal: at most 4 ms per bundle.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protoreg import Profile, bundles, stores

FILES = 20
TOTAL = 1024 * 1024
ROUNDS = 200


def make_bundle_dir(root: Path) -> Path:
    d = root / "ext"
    d.mkdir()
    manifest = {"manifest_version": 3, "name": "bench", "version": "1.0.0",
                "browser_specific_settings": {"gecko": {"id": "bench@example.org"}},
                "protocol_handlers": [{"protocol": "web+bench", "name": "bench", "uriHandlerScript": "f00.py"}]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    size = (TOTAL - (d / "manifest.json").stat().st_size) // FILES
    for i in range(FILES):
        line = f"# file {i} " + "x" * 60 + "\n"
        body = "async def handleRequest(request):\n    return None\n" if i == 0 else ""
        text = body + line * ((size - len(body)) // len(line) + 1)
        (d / f"f{i:02d}.py").write_text(text[:size])
    return d


def timed(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="protoreg-bench-verify-"))
    key_path, _ = stores.generate_key(root / "store.key")
    key = stores.load_private_key(key_path)
    root_json = stores.init_store(root / "store", key)
    ext = make_bundle_dir(root)
    data = bundles.pack(ext)
    stores.publish(root / "store", data, key)
    profile = Profile(root / "profile")
    profile.trust("bench", str(root / "store"), root_json)
    profile.install("bench@example.org")
    rec = profile.installed["bench@example.org"]
    tree = profile.path / "extensions" / rec["sha256"]
    payload = b"".join(bundles.parse(data).files.values())
    assert abs(len(payload) - TOTAL) < 1024, len(payload)

    ours = timed(lambda: profile.verify("bench@example.org"), ROUNDS)
    tree_only = timed(lambda: bundles.verify_tree(tree, rec["sha256"], source="bench"), ROUNDS)
    baseline = timed(lambda: hashlib.sha256(payload).digest(), ROUNDS)
    print(f"bundle: manifest.json + {FILES} files, {len(payload) / 2**20:.2f} MiB; median of {ROUNDS}")
    print(f"ours (Profile.verify: read, per-file + bundle sha256, manifest): {ours * 1e3:.3f} ms")
    print(f"  of which bundles.verify_tree (read + hashes):                 {tree_only * 1e3:.3f} ms")
    print(f"baseline hashlib.sha256 of the same bytes in memory:             {baseline * 1e3:.3f} ms")
    print(f"ratio ours/baseline: {ours / baseline:.2f}x   goal <= 4 ms: {'met' if ours <= 0.004 else 'MISSED'}")


if __name__ == "__main__":
    main()
