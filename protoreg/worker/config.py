"""Host-side settings for worker processes (the embedding app's choice, never the manifest's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["WorkerConfig"]


@dataclass(frozen=True)
class WorkerConfig:
    #: Seconds a worker may sit with no request in flight before it is stopped (None: never).
    idle_timeout: float | None = 60.0
    #: Seconds to wait for a handler's response head, and between two body chunks, before answering 504.
    request_timeout: float = 30.0
    #: After a request times out, the worker must answer a ping within this many seconds or it is killed and
    #: replaced (a handler in a busy loop would otherwise block its extension until RLIMIT_CPU).
    liveness_timeout: float = 2.0
    #: Workers per extension; more than one helps CPU-heavy handlers.
    pool_size: int = 1
    #: Concurrent requests a worker takes before the pool starts another (when pool_size > 1).
    max_in_flight: int = 256
    #: Seconds to wait for a new worker's HELLO.
    start_timeout: float = 15.0
    #: Restart backoff after a crash: first delay, factor, cap (seconds).
    backoff_initial: float = 0.05
    backoff_factor: float = 2.0
    backoff_max: float = 5.0
    #: Seconds a worker gets to finish on shutdown before it is killed.
    stop_grace: float = 2.0
    #: Body flow-control window per stream and direction (bytes).
    window: int = 2 * 1024 * 1024
    #: Worker stdout/stderr: lines per second forwarded to logging before the rest are counted and dropped.
    log_lines_per_second: int = 200
    #: Longest line forwarded to logging; longer lines are truncated.
    log_line_max: int = 4096
    #: Keep one generic, not-yet-specialised worker process ready, so a cold start skips interpreter start-up.
    prestart: bool = True
    #: Sandbox settings for every worker (SandboxPolicy fields: rlimit_as, rlimit_cpu, rlimit_nofile,
    #: rlimit_nproc, network_namespace, landlock, seccomp, required, extra read_paths). None disables the sandbox.
    sandbox: Mapping[str, Any] | None = field(default_factory=dict)
    #: Where storage (sqlite) and extension data directories persist. None: in memory and a temporary directory
    #: removed when the Session closes.
    state_dir: str | None = None
    #: Let brokered fetches reach every address that is not globally routable: private, loopback, link-local,
    #: shared (100.64.0.0/10) and site-local ranges (off: SSRF protection).
    allow_private_networks: bool = False
    #: Non-public networks brokered fetches may reach, as CIDRs (e.g. ("10.1.0.0/16",)); narrower than the above.
    allow_networks: tuple[str, ...] = ()
    #: Brokered fetches one extension may have running at once; one more is refused with PermissionDenied.
    max_concurrent_fetches: int = 16
    #: Extensions with origin_isolation "origin" run one worker per origin, and whoever can make requests names
    #: the origins: at most this many run per extension. A new origin stops the least recently used idle one; when
    #: all are busy, its request is refused with 503.
    max_isolated_origins: int = 16
    #: Bytes of runtime.storage one extension may hold over all its origins (keys and values).
    storage_quota: int = 64 * 1024 * 1024
    #: The workers' event loop (protoreg/loops.py): "asyncio", "uvloop", or "auto" (uvloop when installed).
    #: uvloop lowers a round trip's p50 by 10-40 us but adds 2.2 MiB to every idle worker, so it is opt-in.
    event_loop: str = "asyncio"
    #: CPUs the workers may run on (``os.sched_setaffinity``), e.g. ``{0}``; None: wherever the scheduler puts
    #: them. Pinning workers to the embedding app's own CPU (pin the app too) saves the cross-CPU wake-up of
    #: every round trip, lowering p50 latency by about a quarter, but makes the two share one CPU and roughly halves
    #: throughput under concurrency (docs/benchmarks.md): for latency-bound embeddings only.
    cpu_affinity: frozenset[int] | None = None
    #: Bytes of handler responses the parent keeps to answer repeats without a worker round trip: only 200s the
    #: handler marks ``immutable`` with a max-age, e.g. ipfs content (protoreg/cache.py). 0 turns the cache off.
    response_cache_bytes: int = 64 * 1024 * 1024
    #: Per-extension overrides of ``sandbox``, keyed by extension id (e.g. a larger rlimit_as for one extension).
    sandbox_per_extension: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from protoreg.loops import loop_factory

        loop_factory(self.event_loop)  # a ConfigError now, not a worker that fails to start
        if self.cpu_affinity is not None:
            _check_affinity(self.cpu_affinity)


def _check_affinity(cpus: object) -> None:
    from protoreg.errors import ConfigError

    if not isinstance(cpus, (set, frozenset, tuple, list)) or not cpus:
        raise ConfigError(f"cpu_affinity must be a non-empty set of CPU numbers, got {cpus!r}")
    bad = [c for c in cpus if not isinstance(c, int) or isinstance(c, bool) or c < 0]
    if bad:
        raise ConfigError(f"cpu_affinity holds {bad[0]!r}, which is not a CPU number (an int >= 0)")
    if hasattr(os, "sched_getaffinity"):
        usable = os.sched_getaffinity(0)
        if not set(cpus) & usable:
            raise ConfigError(f"cpu_affinity {sorted(cpus)} names no CPU this process may use "
                              f"({sorted(usable)}): pick from those")
