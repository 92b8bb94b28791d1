"""ops/s of Registry.resolve vs ada_url.join_url vs yarl.URL.join on the same inputs, measured in one run.

    python bench/url_resolve.py

yarl can't resolve against a custom-scheme base (it returns the reference unchanged), so it gets the same
references against the https form of each base: the work a yarl user would actually do. One row calls
protoreg.policy.urls.resolve directly, without the registry's LRU cache, to show what a cache miss costs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ada_url
from yarl import URL

from bench._common import bench_registry
from protoreg.policy import urls

BASES = ["web+bench://bafy.example/dir/sub/page.html", "web+bench://site.example:8080/a/b/c?q=1"]
REFS = ["../img/logo.png", "./style.css", "/abs/path.js?x=1", "other.html#frag", "?query=2", "//cdn.example/x",
        "web+bench://absolute.example/p", "a/b/../c/./d", "%7Euser/file", "#only-fragment"]
ROUNDS = 3000


def _unique(ref: str, i: int) -> str:
    """A distinct reference per call, so that no cache (ours, yarl's or ada's) answers from memory."""
    if ref.startswith("#"):
        return f"{ref}{i}"
    path, hash_, frag = ref.partition("#")
    return f"{path}{'&' if '?' in path else '?'}n={i}{hash_}{frag}"


def measure(cases: dict[str, tuple[Callable[[str, str], object], bool]], rounds: int = 7) -> dict[str, float]:
    """Best ops/s of each ``name -> (fn(base, ref), unique)``. The cases take turns, round after round, so that a
    burst of load from elsewhere on a shared machine hits every side alike instead of one whole measurement."""
    pairs = [(b, r) for b in BASES for r in REFS]
    best = dict.fromkeys(cases, 0.0)
    serial = 0
    for fn, _ in cases.values():
        fn(*pairs[0])
    for _ in range(rounds):
        for name, (fn, unique) in cases.items():
            work = pairs * (ROUNDS // 10)
            if unique:
                work = [(b, _unique(r, serial + i)) for i, (b, r) in enumerate(work)]
                serial += len(work)
            t = time.perf_counter()
            for base, ref in work:
                fn(base, ref)
            best[name] = max(best[name], len(work) / (time.perf_counter() - t))
    return best


def main() -> None:
    reg, _ = bench_registry()
    https_bases = {b: b.replace("web+bench:", "https:") for b in BASES}
    yarl_bases = {b: URL(https_bases[b]) for b in BASES}
    schemes = reg.schemes

    def ours_fn(base: str, ref: str) -> object:
        return reg.resolve(ref, base=base)

    def yarl_fn(base: str, ref: str) -> object:
        return yarl_bases[base].join(URL(ref.replace("web+bench:", "https:")))

    m = measure({
        "ours": (ours_fn, False),
        "uncached": (ours_fn, True),
        "direct": (lambda base, ref: urls.resolve(ref, base, registered=schemes), True),
        "ada": (lambda base, ref: ada_url.join_url(https_bases[base], ref.replace("web+bench:", "https:")), True),
        "yarl_rep": (yarl_fn, False),
        "yarl": (yarl_fn, True),
    })
    ours, uncached, direct, ada, yarl_rep, yarl = (m[k] for k in ("ours", "uncached", "direct", "ada", "yarl_rep",
                                                                     "yarl"))
    print(f"{'reg.resolve, repeated inputs (its LRU cache)':<52} {ours:>10,.0f} ops/s   ours/yarl "
          f"{ours / yarl_rep:5.2f}x (yarl on the same repeated inputs)")
    print(f"{'reg.resolve, unique inputs':<52} {uncached:>10,.0f} ops/s   ours/yarl {uncached / yarl:5.2f}x "
          "(goal >= 1.0)")
    print(f"{'urls.resolve (no registry cache), unique inputs':<52} {direct:>10,.0f} ops/s   ours/yarl "
          f"{direct / yarl:5.2f}x")
    print(f"{'ada_url.join_url (https, no URL object), unique':<52} {ada:>10,.0f} ops/s   ours/ada  "
          f"{uncached / ada:5.2f}x")
    print(f"{'yarl.URL.join (https), repeated inputs':<52} {yarl_rep:>10,.0f} ops/s")
    print(f"{'yarl.URL.join (https), unique inputs':<52} {yarl:>10,.0f} ops/s   (yarl can't resolve custom schemes: "
          "https stands in)")


if __name__ == "__main__":
    main()
