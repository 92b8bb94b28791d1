"""A parent-side cache for responses that handlers declare immutable (HTTP caching, RFC 9111 and RFC 8246).

A handler answer such as an ``ipfs://`` file (``Cache-Control: public, max-age=29030400, immutable``) is the same
bytes for every request that varies the same way, so the parent may answer repeats itself, without a round trip
to the worker. Only what the handler explicitly promises is stored:

* the request is a ``GET`` without a body (a ``HEAD`` is answered from a stored ``GET``) with no ``Range``, conditional
  (``If-*``), ``Authorization`` or ``Cookie`` header, and does not ask to bypass caches (``Cache-Control:
  no-cache``/``no-store``/``max-age=0``, ``Pragma: no-cache``: such a request goes to the handler and its answer
  refreshes the entry);
* the response is a 200 whose ``Cache-Control`` holds ``immutable`` and a positive ``max-age`` or ``s-maxage``
  and none of ``private``, ``no-store`` or ``no-cache``; it sets no cookie; its ``Vary`` does not hold ``*``;
  and its whole body, at most ``max_entry`` bytes, was read to the end (a cut-off body is never stored).

Keys are (extension id, URL, initiator origin) plus the values of the request headers the response's ``Vary``
names, so a handler that varies on ``Accept`` (ipfs) gets one entry per ``Accept``. Entries expire after their
freshness lifetime, the least recently used are dropped beyond ``max_bytes``, and every entry of an extension is
dropped when it is installed again, updated, reloaded, disabled or uninstalled. Everything after the handler
(revocation, CORS, CSP, response filters, content scripts) still runs on every answer, hit or miss.

Like any shared HTTP cache (and every IPFS gateway), a hit is faster than a miss, so the timing of a request can
tell that the same URL was loaded before by the same initiator origin; the key includes that origin so one site
cannot probe another site's requests that carried an ``Origin``, and a handler that considers a response's
existence sensitive marks it ``private`` or leaves out ``immutable``.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["CachedResponse", "Collector", "ResponseCache", "freshness_lifetime"]

#: Request headers that make an answer specific to the requester or to part of the body: never from the cache.
_BYPASS_HEADERS: Final = frozenset({"range", "authorization", "cookie", "if-match", "if-none-match",
                                    "if-modified-since", "if-unmodified-since", "if-range"})
_DIRECTIVE: Final = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*(?:,|$)')


def _directives(values: Iterable[str]) -> dict[str, str]:
    """``Cache-Control`` directives (lowercased names → values, "" for none) of one or more header values."""
    out: dict[str, str] = {}
    for value in values:
        for m in _DIRECTIVE.finditer(value):
            if m.group(1):
                out.setdefault(m.group(1).lower(), (m.group(2) or "").strip('"'))
    return out


def freshness_lifetime(headers: Iterable[tuple[str, str]]) -> float | None:
    """Seconds a response may be answered from a shared cache, or None when it must not be stored here."""
    control: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cache-control":
            control.append(value)
        elif lower == "set-cookie":
            return None
        elif lower == "vary" and "*" in value:
            return None
    d = _directives(control)
    if "immutable" not in d or "private" in d or "no-store" in d or "no-cache" in d:
        return None
    age = d.get("s-maxage") or d.get("max-age")
    if not age or not age.isdigit() or int(age) <= 0:
        return None
    return float(min(int(age), 1 << 31))


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float  # time.monotonic()
    stored: float

    def response_headers(self) -> list[tuple[str, str]]:
        """The handler's headers plus ``Age`` (RFC 9111 §5.1): how long ago the handler answered."""
        return [*self.headers, ("Age", str(int(time.monotonic() - self.stored)))]


class Collector:
    """The body of one answer being read, kept for the cache: ``add`` each chunk's size before holding on to it
    (False: over a limit, stop collecting), then ``finish`` with the whole body, or ``abandon``. Either one ends
    it and gives its bytes back to the cache's collect budget."""

    __slots__ = ("_cache", "_done", "_store", "size")

    def __init__(self, cache: ResponseCache, store: Callable[[bytes], object]) -> None:
        self._cache, self._store = cache, store
        self._done = False
        self.size = 0

    def add(self, n: int) -> bool:
        cache = self._cache
        if self._done or self.size + n > cache.max_entry or cache.collecting + n > cache.collect_max:
            self.abandon()
            return False
        cache.collecting += n
        self.size += n
        return True

    def finish(self, body: bytes) -> None:
        if self._done:
            return
        self.abandon()
        if len(body) <= self._cache.max_entry:
            self._store(body)

    def abandon(self) -> None:
        if not self._done:
            self._done = True
            self._cache.collecting -= self.size
            self.size = 0


def _vary_names(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    names: list[str] = []
    for name, value in headers:
        if name.lower() == "vary":
            names += [part.strip().lower() for part in value.split(",") if part.strip()]
    return tuple(sorted(set(names)))


def _header_values(headers: Iterable[tuple[str, str]], names: tuple[str, ...]) -> tuple[str, ...]:
    if not names:
        return ()
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in names:
            found.setdefault(lower, []).append(" ".join(value.split()))
    return tuple(", ".join(found.get(n, ())) for n in names)


class ResponseCache:
    """Bounded LRU of immutable handler responses; see the module docstring for what is stored and when."""

    def __init__(self, max_bytes: int = 64 << 20, max_entry: int = 4 << 20) -> None:
        self.max_bytes = max_bytes
        self.max_entry = min(max_entry, max_bytes)
        #: Bytes of bodies being collected for storing, over all streams at once: a stream holds on to its chunks
        #: until its end, so many concurrent streams of large immutable answers must not multiply memory.
        self.collect_max = max(self.max_entry, max_bytes // 4)
        self.collecting = 0
        self.size = 0
        self.hits = 0
        self.misses = 0
        # (extension id, url, origin, values of the Vary headers) -> entry, least recently used first
        self._entries: OrderedDict[tuple[str, str, str, tuple[str, ...]], CachedResponse] = OrderedDict()
        # (extension id, url, origin) -> [the request headers its answers vary on, how many variants are stored]
        self._variants: dict[tuple[str, str, str], list] = {}  # type: ignore[type-arg]

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def usable(method: str, headers: Iterable[tuple[str, str]]) -> tuple[bool, bool]:
        """(may this request be answered from the cache, may its answer be stored)."""
        if method not in ("GET", "HEAD"):
            return False, False
        lookup = True
        for name, value in headers:
            lower = name.lower()
            if lower in _BYPASS_HEADERS:
                return False, False
            if lower == "cache-control":
                d = _directives([value])
                if "no-store" in d:
                    return False, False
                if "no-cache" in d or d.get("max-age") == "0":
                    lookup = False
            elif lower == "pragma" and "no-cache" in value.lower():
                lookup = False
        return lookup, method == "GET"

    def get(self, extension_id: str, url: str, origin: str,
            headers: Iterable[tuple[str, str]]) -> CachedResponse | None:
        base = (extension_id, url, origin)
        found = self._variants.get(base)
        if found is None:
            self.misses += 1
            return None
        key = (*base, _header_values(headers, found[0]))
        entry = self._entries.get(key)  # type: ignore[call-overload]
        if entry is None or entry.expires <= time.monotonic():
            if entry is not None:
                self._drop(key)  # type: ignore[arg-type]
            self.misses += 1
            return None
        self._entries.move_to_end(key)  # type: ignore[arg-type]
        self.hits += 1
        return entry

    def put(self, extension_id: str, url: str, origin: str, request_headers: Iterable[tuple[str, str]],
            status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        """Store a complete answer if the handler allows it; True when stored."""
        if status != 200 or len(body) > self.max_entry:
            return False
        lifetime = freshness_lifetime(headers)
        if lifetime is None:
            return False
        vary = _vary_names(headers)
        base = (extension_id, url, origin)
        found = self._variants.get(base)
        if found is not None and found[0] != vary:  # the handler changed what it varies on: start again
            self._forget_url(base)
        now = time.monotonic()
        key = (*base, _header_values(request_headers, vary))
        self._drop(key)  # type: ignore[arg-type]
        entry = CachedResponse(status, tuple(headers), body, now + lifetime, now)
        self._entries[key] = entry  # type: ignore[index]
        self._variants.setdefault(base, [vary, 0])[1] += 1
        self.size += self._cost(key, entry)  # type: ignore[arg-type]
        while self.size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        return True

    def forget(self, extension_id: str) -> None:
        """Drop every entry of an extension (reinstalled, updated, reloaded, disabled or uninstalled)."""
        for key in [k for k in self._entries if k[0] == extension_id]:
            self._drop(key)

    def _forget_url(self, base: tuple[str, str, str]) -> None:
        for key in [k for k in self._entries if k[:3] == base]:
            self._drop(key)

    def collector(self, store: Callable[[bytes], object]) -> Collector:
        """Collects a streamed body within max_entry and collect_max, then ``store``s it (see Collector)."""
        return Collector(self, store)

    def stats(self) -> dict[str, int]:
        """What the dashboard shows: entries, bytes held and allowed, hits and misses since the session started."""
        return {"entries": len(self._entries), "bytes": self.size, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses}

    @staticmethod
    def _cost(key: tuple[str, str, str, tuple[str, ...]], entry: CachedResponse) -> int:
        """What an entry holds, its key included: whoever makes requests chooses URLs and header values, so many
        small answers under long URLs must count against the cap as much as one large answer."""
        return (len(entry.body) + sum(len(n) + len(v) for n, v in entry.headers) + len(key[1]) + len(key[2])
                + sum(map(len, key[3])) + 256)

    def _drop(self, key: tuple[str, str, str, tuple[str, ...]]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.size -= self._cost(key, entry)
        found = self._variants.get(key[:3])  # type: ignore[call-overload]
        if found is not None:
            found[1] -= 1
            if found[1] <= 0:
                del self._variants[key[:3]]  # type: ignore[arg-type]
