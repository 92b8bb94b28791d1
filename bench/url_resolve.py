"""ops/s of Registry.resolve vs ada_url.join_url vs yarl.URL.join on the same inputs, measured in one run.

    python bench/url_resolve.py

yarl can't resolve against a custom-scheme base (it returns the reference unchanged), so it gets the same
references against the https form of each base: the work a yarl user would actually do. One row calls
protoreg.policy.urls.resolve directly, without the registry's LRU cache, to show what a cache miss costs.
"""

from __future__ import annotations

import sys
import time
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


def measure(fn, *, unique: bool = False) -> float:  # type: ignore[no-untyped-def]
    pairs = [(b, r) for b in BASES for r in REFS]
    fn(*pairs[0])
    best = 0.0
    for rep in range(3):
        work = pairs * (ROUNDS // 10)
        if unique:
            work = [(b, _unique(r, rep * len(work) + i)) for i, (b, r) in enumerate(work)]
        t = time.perf_counter()
        for base, ref in work:
            fn(base, ref)
        best = max(best, len(work) / (time.perf_counter() - t))
    return best


def main() -> None:
    reg, _ = bench_registry()
    https_bases = {b: b.replace("web+bench:", "https:") for b in BASES}
    yarl_bases = {b: URL(https_bases[b]) for b in BASES}
    ours = measure(lambda base, ref: reg.resolve(ref, base=base))
    uncached = measure(lambda base, ref: reg.resolve(ref, base=base), unique=True)
    schemes = reg.schemes
    direct = measure(lambda base, ref: urls.resolve(ref, base, registered=schemes), unique=True)
    ada = measure(lambda base, ref: ada_url.join_url(https_bases[base], ref.replace("web+bench:", "https:")),
                  unique=True)
    yarl_rep = measure(lambda base, ref: yarl_bases[base].join(URL(ref.replace("web+bench:", "https:"))))
    yarl = measure(lambda base, ref: yarl_bases[base].join(URL(ref.replace("web+bench:", "https:"))), unique=True)
    print(f"{'reg.resolve, repeated inputs (its LRU cache)':<52} {ours:>10,.0f} ops/s   ours/yarl {ours / yarl_rep:5.2f}x"
          " (yarl on the same repeated inputs)")
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
