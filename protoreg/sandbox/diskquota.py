"""The data-dir cap (``SandboxPolicy.disk_max``), measured by the host.

No kernel layer bounds how much a worker writes into its data dir: the mount namespace and Landlock decide where it
may write, not how much, and cgroups count memory, not disk. Without a cap one extension can fill the host's disk
(the profile, the audit log and every other extension's data live there too). Two parts bound it:

- in the worker, ``RLIMIT_FSIZE`` = ``disk_max`` (the rlimits layer): no single file grows past the cap (Python
  ignores SIGXFSZ, so the write fails with EFBIG);
- in the host, :func:`usage` of the directory before its first worker starts (a data dir over the cap starts no
  worker: the request fails with 507 and says how to fix it; once over, every start measures again) and every
  :data:`PERIOD` seconds while one runs; a worker found over the cap is killed and the reason logged.

What this does not do: it is not a hard quota. Between two measurements a worker can write at the disk's speed,
so the host may briefly hold up to ``disk_max`` plus one period of writes (the test measures the overshoot).
Filesystem project quotas would be exact, but need an ext4/XFS mount with ``prjquota`` and root in the host's
namespace, which protoreg can't assume.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MIN_ENTRY", "PERIOD", "usage"]

#: Seconds between two measurements of a running worker's data dir (longer when one measurement is slow: never
#: more than 2% of the time in a measuring thread: 16 000 files take ≈ 60 ms, so a period of 3 s).
PERIOD = 1.0


#: What every entry counts at least: an empty file allocates no data block but takes an inode of the host's
#: filesystem, which runs out long before its bytes do (8 000 empty files: ≈ 140 KiB of directory blocks on ext4).
MIN_ENTRY = 4096


def usage(path: str | Path) -> int:
    """Bytes allocated under ``path`` (files, directories, symlinks; sparse files count what they allocate), each
    entry at least :data:`MIN_ENTRY`, without following symlinks; entries that vanish while it walks are skipped."""
    total = 0
    pending = [os.fspath(path)]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += max(st.st_blocks * 512, MIN_ENTRY)
                    if stat.S_ISDIR(st.st_mode):
                        pending.append(entry.path)
        except OSError:
            continue
    return total
