"""Key-value storage for handlers, partitioned per (extension, origin), persisted with sqlite in the parent."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["StorageStore"]

MAX_KEY = 1024
MAX_VALUE = 4 * 1024 * 1024


class StorageStore:
    """One sqlite database for a host. The worker never touches it: the broker reads and writes on its behalf."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (ext TEXT, origin TEXT, key TEXT, value BLOB, "
                         "PRIMARY KEY (ext, origin, key))")

    def get(self, ext: str, origin: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE ext=? AND origin=? AND key=?",
                                   (ext, origin, key)).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, ext: str, origin: str, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)", (ext, origin, key, value))

    def delete(self, ext: str, origin: str, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM kv WHERE ext=? AND origin=? AND key=?",
                                    (ext, origin, key)).rowcount > 0

    def keys(self, ext: str, origin: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM kv WHERE ext=? AND origin=? ORDER BY key",
                                                   (ext, origin))]

    def usage(self, ext: str) -> int:
        """Bytes the extension stores, over all its origins (keys and values)."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(value)), 0) FROM kv "
                                   "WHERE ext=?", (ext,)).fetchone()
        return int(row[0])

    def size(self, ext: str, origin: str, key: str) -> int:
        """Bytes one entry takes (0 when absent)."""
        with self._lock:
            row = self._db.execute("SELECT LENGTH(CAST(key AS BLOB)) + LENGTH(value) FROM kv WHERE ext=? AND origin=? "
                                   "AND key=?", (ext, origin, key)).fetchone()
        return 0 if row is None else int(row[0])

    def delete_extension(self, ext: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM kv WHERE ext=?", (ext,)).rowcount

    def close(self) -> None:
        self._db.close()
