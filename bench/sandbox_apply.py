"""Cost of apply_sandbox: a forked child that sandboxes itself and exits, vs a plain fork that just exits,
measured in the same run (median of N), plus the time spent inside apply_sandbox per layer set.

    python bench/sandbox_apply.py [N]
"""

from __future__ import annotations

import os
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protoreg.sandbox import SandboxPolicy, apply_sandbox, default_read_paths, probe


def fork_once(policy: SandboxPolicy | None) -> tuple[float, float]:
    """(ms from fork to reaped child, ms the child spent in apply_sandbox)."""
    read, write = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        own = replace(policy, keep_fds=(write,)) if policy is not None else None  # the result pipe stays open
        t = time.perf_counter()
        try:
            if own is not None:
                apply_sandbox(own)
        except BaseException:
            code = 1
        os.write(write, struct.pack("d", time.perf_counter() - t))
        os._exit(code)
    os.close(write)
    inner = struct.unpack("d", os.read(read, 8))[0]
    os.close(read)
    _, status = os.waitpid(pid, 0)
    total = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("apply_sandbox failed in the child")
    return total * 1000, inner * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 41
    bundle = tempfile.mkdtemp()
    read_paths = default_read_paths(bundle)
    offered = [layer.name for layer in probe().layers if layer.active]
    print(f"layers offered here: {', '.join(offered)}; N={n}")
    variants: list[tuple[str, SandboxPolicy | None]] = [("plain fork + exit", None)]
    base = {"read_paths": read_paths, "network_namespace": False, "landlock": False, "seccomp": False}
    for label, extra in (("fds + rlimits + no_new_privs", {}), ("+ namespaces", {"network_namespace": True}),
                         ("+ landlock", {"network_namespace": True, "landlock": True}),
                         ("+ seccomp (full sandbox)", {"network_namespace": True, "landlock": True,
                                                       "seccomp": True})):
        variants.append((label, SandboxPolicy(**{**base, **extra})))
    results: dict[str, list[float]] = {label: [] for label, _ in variants}
    inner: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(n):  # interleaved, so drift on a shared machine hits every variant alike
        for label, policy in variants:
            total, spent = fork_once(policy)
            results[label].append(total)
            inner[label].append(spent)
    plain = statistics.median(results["plain fork + exit"])
    print(f"{'variant':<32}{'fork..reaped (ms)':>20}{'in apply_sandbox (ms)':>24}{'vs plain fork':>15}")
    for label, _ in variants:
        med = statistics.median(results[label])
        print(f"{label:<32}{med:>20.2f}{statistics.median(inner[label]):>24.2f}{med / plain:>14.2f}x")


if __name__ == "__main__":
    main()
