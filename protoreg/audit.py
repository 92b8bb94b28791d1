"""The capability audit log: every brokered call, allowed or denied, queryable from Python."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["AuditLog", "AuditRecord"]


@dataclass(frozen=True)
class AuditRecord:
    time: float
    extension: str
    origin: str
    capability: str
    target: str
    decision: Literal["allowed", "denied"]
    reason: str = ""

    def __getitem__(self, key: str) -> Any:  # the dashboard renders records like mappings
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(asdict(self))


class AuditLog:
    """A bounded in-memory log (the newest ``capacity`` records)."""

    def __init__(self, capacity: int = 10000) -> None:
        self._records: collections.deque[AuditRecord] = collections.deque(maxlen=capacity)

    def record(self, extension: str, origin: str, capability: str, target: str, allowed: bool,
               reason: str = "") -> AuditRecord:
        rec = AuditRecord(time.time(), extension, origin, capability, target, "allowed" if allowed else "denied",
                          reason)
        self._records.append(rec)
        return rec

    def records(self, *, extension: str | None = None, capability: str | None = None,
                decision: str | None = None) -> list[AuditRecord]:
        return [r for r in self._records if (extension is None or r.extension == extension)
                and (capability is None or r.capability == capability)
                and (decision is None or r.decision == decision)]

    def recent(self, n: int = 50) -> list[AuditRecord]:
        return list(self._records)[-n:][::-1]

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)
