"""The capability audit log: every brokered call, allowed or denied (with the reason), queryable.

A Session with a profile (or a state dir) keeps it in ``<profile>/audit.sqlite3``, so it survives restarts and
``protoreg audit`` can query it while ``protoreg serve`` writes to it (SQLite WAL). Without one it lives in memory.
Queries filter by extension, capability or permission, decision and time.

A worker chooses what its records say (the URL it fetches, a storage key) and how often it calls, so the log is
bounded on both counts: each text field keeps at most :data:`MAX_FIELD` characters (the rest is replaced by a note
of how much was cut), and a persistent log holds at most ``capacity`` records and ``max_bytes`` of live data (the
oldest records go first; SQLite reuses their pages, so the file stops growing).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from protoreg._text import clip

__all__ = ["MAX_FIELD", "AuditLog", "AuditRecord"]

#: Longest text kept in one field of a record (a URL, a storage key, a denial's message), in characters.
MAX_FIELD = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    extension TEXT NOT NULL,
    origin TEXT NOT NULL,
    capability TEXT NOT NULL,
    permission TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_ext_time ON calls (extension, time);
CREATE INDEX IF NOT EXISTS calls_time ON calls (time);
"""
_COLUMNS = "time, extension, origin, capability, target, decision, reason, permission"


@dataclass(frozen=True)
class AuditRecord:
    time: float
    extension: str
    origin: str
    capability: str                      # "fetch", "storage.get", ...
    target: str                          # the URL fetched, the storage key
    decision: Literal["allowed", "denied"]
    reason: str = ""                     # why it was denied (the PermissionDenied message), or how it was allowed
    permission: str = ""                 # the permission that decided: "storage", a host match pattern

    def __getitem__(self, key: str) -> Any:  # the dashboard renders records like mappings
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(asdict(self))


class AuditLog:
    """The audit log in SQLite: ``path`` (persistent) or in memory (the newest ``capacity`` records)."""

    def __init__(self, capacity: int = 10000, *, path: str | os.PathLike[str] | None = None,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = Path(path) if path is not None else None
        self.capacity = capacity if path is None else max(capacity, 1_000_000)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:", check_same_thread=False,
                                   isolation_level=None, timeout=10)
        if path is not None:
            os.chmod(path, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._inserted = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, extension: str, origin: str, capability: str, target: str, allowed: bool,
               reason: str = "", *, permission: str = "") -> AuditRecord:
        extension, origin, capability, target, reason, permission = (
            clip(v, MAX_FIELD) for v in (extension, origin, capability, target, reason, permission))
        rec = AuditRecord(time.time(), extension, origin, capability, target, "allowed" if allowed else "denied",
                          reason, permission)
        with self._lock:
            self._db.execute(f"INSERT INTO calls ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (constant)
                             (rec.time, extension, origin, capability, target, rec.decision, reason, permission))
            self._inserted += 1
            if self._inserted % 1000 == 0:
                self._prune()
        return rec

    def _prune(self) -> None:
        """Keep the newest ``capacity`` records, then drop the oldest quarter while the live data (pages in use)
        is over ``max_bytes``."""
        self._db.execute("DELETE FROM calls WHERE id <= (SELECT MAX(id) FROM calls) - ?", (self.capacity,))
        for _ in range(8):
            pages, free, size = (self._db.execute(f"PRAGMA {p}").fetchone()[0]
                                 for p in ("page_count", "freelist_count", "page_size"))
            if (pages - free) * size <= self.max_bytes:
                return
            self._db.execute("DELETE FROM calls WHERE id <= (SELECT MIN(id) FROM calls) + "
                             "(SELECT COUNT(*) FROM calls) / 4")

    def records(self, *, extension: str | None = None, capability: str | None = None,
                decision: str | None = None, permission: str | None = None, since: float | None = None,
                until: float | None = None, limit: int | None = None, newest_first: bool = False
                ) -> list[AuditRecord]:
        """Records matching every filter given. ``capability`` is exact ("storage.get"); ``permission`` matches
        the permission that decided ("storage", a host pattern) or a capability family ("storage" also matches
        "storage.get"; "fetch" matches fetches); ``since``/``until`` are Unix times."""
        where, params = [], []  # type: ignore[var-annotated]
        if extension is not None:
            where.append("extension = ?")
            params.append(extension)
        if capability is not None:
            where.append("capability = ?")
            params.append(capability)
        if decision is not None:
            where.append("decision = ?")
            params.append(decision)
        if permission is not None:
            where.append("(permission = ? OR capability = ? OR capability LIKE ? ESCAPE '\\')")
            like = permission.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"
            params += [permission, permission, like]
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        # only constant SQL fragments are joined; every value is a parameter
        sql = f"SELECT {_COLUMNS} FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "")  # noqa: S608
        sql += f" ORDER BY id {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [AuditRecord(*row) for row in rows]

    def recent(self, n: int = 50) -> list[AuditRecord]:
        """The newest ``n`` records, newest first."""
        return self.records(limit=n, newest_first=True)

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
