"""WebExtension match patterns (``https://*.example.org/*``, ``<all_urls>``) for host_permissions (pure)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache

from yarl import URL

__all__ = ["MatchPattern", "parse_pattern"]

_PATTERN = re.compile(r"^(\*|https?|wss?|ftp|[a-z][a-z0-9+.\-]*)://(\*|\*\.[^/*:]+|[^/*:]+)(?::[0-9]+)?(/.*)$")


@dataclass(frozen=True)
class MatchPattern:
    text: str
    scheme: str   # "*" matches http and https (and ws/wss), as in browsers
    host: str     # "*", "*.example.org" or "example.org"
    path: str     # glob with "*"

    def matches(self, url: URL) -> bool:
        scheme = url.scheme
        if self.text == "<all_urls>":
            return scheme in ("http", "https", "ws", "wss")
        if self.scheme == "*":
            if scheme not in ("http", "https", "ws", "wss"):
                return False
        elif scheme != self.scheme:
            return False
        host = (url.raw_host or "").lower()
        if self.host != "*":
            if self.host.startswith("*."):
                base = self.host[2:]
                if host != base and not host.endswith("." + base):
                    return False
            elif host != self.host:
                return False
        path = url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")
        return fnmatch.fnmatchcase(path, self.path)


@lru_cache(maxsize=512)
def parse_pattern(text: str) -> MatchPattern:
    if text == "<all_urls>":
        return MatchPattern(text, "*", "*", "*")
    m = _PATTERN.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a match pattern")
    return MatchPattern(text, m.group(1), m.group(2).lower(), m.group(3))
