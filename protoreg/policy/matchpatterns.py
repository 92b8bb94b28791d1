"""WebExtension match patterns (``https://*.example.org/*``, ``<all_urls>``): host permissions, store ceilings and
content scripts' ``matches`` (pure).

``<scheme>://<host>[:<port>]/<path>``, as Chrome and Firefox define them:

- scheme: a scheme, or ``*`` for http, https, ws and wss;
- host: ``*``, ``*.`` followed by a domain (the domain and its subdomains), or one host (a name, or an IPv4
  address);
- port: none or ``*`` for any port, or a number that the URL's port (its default port when it names none) must
  equal: a grant for ``http://127.0.0.1:8080/*`` is not a grant for the rest of the host's ports;
- path: ``*`` matches any run of characters; every other character, ``?`` and ``[`` included, is itself (these
  are not shell globs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from yarl import URL

from protoreg.errors import InvalidPattern

__all__ = ["MatchPattern", "parse_pattern", "pattern_problem"]

WEB_SCHEMES: Final = ("http", "https", "ws", "wss")
_EXAMPLE: Final = '"https://example.org/*" or "https://*.example.org/*"'
_SCHEME: Final = re.compile(r"^(\*|[a-z][a-z0-9+.\-]*)$")
_HOST: Final = re.compile(r"^(\*|(\*\.)?[A-Za-z0-9\-_~]+(\.[A-Za-z0-9\-_~]+)*\.?)(?::(\*|[0-9]{1,5}))?$")


def pattern_problem(pattern: str) -> tuple[str, str] | None:
    """None when ``pattern`` is a match pattern, else ``(what is wrong, how to fix it)``."""
    if pattern == "<all_urls>":
        return None
    scheme, sep, rest = pattern.partition("://")
    if not sep:
        return (f"{pattern!r} is not a match pattern: it has no '://'",
                f"use <scheme>://<host>/<path>, e.g. {_EXAMPLE}")
    if not _SCHEME.match(scheme):
        return (f"{pattern!r} has an invalid scheme {scheme!r}", f"use *, https, http, wss, ws or ftp, e.g. {_EXAMPLE}")
    host, slash, path = rest.partition("/")
    if not slash:
        return (f"{pattern!r} has no path", f'add a path such as "/*": "{pattern}/*"')
    if not host:
        return (f"{pattern!r} has no host", f'name a host, or "*" for any host: "{scheme}://*/{path}"')
    m = _HOST.match(host)
    if not m:
        if "*" in host.partition(":")[0]:
            return (f"{pattern!r}: '*' may only be the whole host or its first label",
                    f'use "{scheme}://*.{host.rsplit("*", 1)[-1].lstrip(".") or "example.org"}/{path}"')
        return (f"{pattern!r} has an invalid host {host!r}",
                f"use a host name or IPv4 address, with an optional :port, e.g. {_EXAMPLE}")
    if m.group(4) not in (None, "*") and not 0 <= int(m.group(4)) <= 65535:
        return (f"{pattern!r} has the port {m.group(4)}, above 65535", 'use a port from 0 to 65535, or ":*" for any')
    if any(c in path for c in "\r\n\t\0"):
        return (f"{pattern!r} has a control character in its path", "remove it (URLs can't contain one)")
    return None


@dataclass(frozen=True)
class MatchPattern:
    text: str
    scheme: str   # "*" matches http, https, ws and wss, as in browsers
    host: str     # "*", "*.example.org" or "example.org"
    path: str     # "*" matches any run of characters; nothing else is special
    port: str = "*"   # "*": any port; else the decimal port the URL's (effective) port must equal
    _path_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = ".*".join(re.escape(part) for part in self.path.split("*"))
        object.__setattr__(self, "_path_re", re.compile(regex, re.DOTALL))

    def path_matches(self, path: str) -> bool:
        """Whether ``path`` (with its ``?query``, if any) matches this pattern's path."""
        return self._path_re.fullmatch(path) is not None

    def matches(self, url: URL) -> bool:
        scheme = url.scheme
        if self.text == "<all_urls>":
            return scheme in WEB_SCHEMES
        if self.scheme == "*":
            if scheme not in WEB_SCHEMES:
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
        if self.port != "*" and url.port != int(self.port):
            return False
        path = url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")
        return self.path_matches(path)

    def covers(self, other: MatchPattern) -> bool:
        """Conservative: True only if every URL ``other`` matches is matched by this pattern (a ceiling check)."""
        if self.text == "<all_urls>":
            return other.text == "<all_urls>" or other.scheme in ("*", *WEB_SCHEMES)
        if other.text == "<all_urls>":
            return self.scheme == "*" and self.host == "*" and self.port == "*" and self.path in ("*", "/*")
        if self.scheme != other.scheme and not (self.scheme == "*" and other.scheme in WEB_SCHEMES):
            return False
        if self.host != "*":
            if other.host == "*":
                return False
            if self.host.startswith("*."):
                base = self.host[2:]
                theirs = other.host[2:] if other.host.startswith("*.") else other.host
                if theirs != base and not theirs.endswith("." + base):
                    return False
            elif other.host != self.host:
                return False
        if self.port != "*" and other.port != self.port:
            return False
        if self.path in ("*", "/*") or self.path == other.path:
            return True
        return "*" not in other.path and self.path_matches(other.path)


@lru_cache(maxsize=512)
def parse_pattern(text: str) -> MatchPattern:
    """The pattern ``text``; raises :class:`~protoreg.errors.InvalidPattern` saying what is wrong and the fix."""
    if text == "<all_urls>":
        return MatchPattern(text, "*", "*", "*")
    problem = pattern_problem(text)
    if problem is not None:
        raise InvalidPattern(f"{problem[0]}; {problem[1]}")
    scheme, _, rest = text.partition("://")
    authority, _, path = rest.partition("/")
    host, _, port = authority.partition(":")
    return MatchPattern(text, scheme, host.lower(), "/" + path, port or "*")
