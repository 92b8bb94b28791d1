"""Origins (pure, no I/O): a (scheme, host) tuple for registered schemes, WHATWG origins for the rest.

- A registered scheme's origin is ``(scheme, host)``; it never has a port (ports are stripped).
- http, https, ws, wss and ftp have WHATWG tuple origins ``(scheme, host, port)``, the default port being None.
- ``blob:`` takes the origin of its inner URL when that is http, https or file (WHATWG), else opaque.
- Everything else (file, data, about, javascript, unregistered schemes) has an opaque origin.

Same-origin: DESIGN.md makes opaque origins same-origin with nothing, themselves included, so
:meth:`Origin.same_origin` is False whenever either side is opaque. ``==``/``hash`` stay ordinary Python equality
(structural for tuple origins, identity for opaque ones) so origins can be dict keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Container
from dataclasses import dataclass, field

from yarl import URL

from protoreg.policy.urls import resolve

__all__ = ["TUPLE_SCHEMES", "Origin", "origin_of"]

TUPLE_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})
_opaque_ids = itertools.count(1)


@dataclass(frozen=True)
class Origin:
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    #: Nonzero for an opaque origin: a unique id, so distinct opaque origins are unequal.
    opaque_id: int = field(default=0)

    @classmethod
    def opaque(cls) -> Origin:
        return cls(opaque_id=next(_opaque_ids))

    @classmethod
    def tuple(cls, scheme: str, host: str, port: int | None = None) -> Origin:
        return cls(scheme=scheme, host=host, port=port)

    @property
    def is_opaque(self) -> bool:
        return self.opaque_id != 0

    def serialize(self) -> str:
        """``"ipfs://cid"``, ``"https://a.example:8443"``, or ``"null"`` for an opaque origin."""
        text = self.__dict__.get("_serialized")  # computed once: origins are immutable and serialized per request
        if text is None:
            if self.is_opaque:
                text = "null"
            else:
                host = f"[{self.host}]" if self.host and ":" in self.host else self.host
                text = f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")
            object.__setattr__(self, "_serialized", text)
        return text

    def same_origin(self, other: Origin) -> bool:
        """True only for two tuple origins with equal scheme, host and port (opaque: never, not even itself)."""
        if self.is_opaque or other.is_opaque:
            return False
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)

    def __str__(self) -> str:
        return self.serialize()


def _tuple_origin(url: URL) -> Origin:
    return Origin.tuple(url.scheme, url.raw_host or "", url.explicit_port)


def origin_of(url: str | URL, *, registered: Container[str] = frozenset()) -> Origin:
    """The origin of ``url`` (a string is parsed with :func:`.urls.resolve`; InvalidURL if it can't be)."""
    parsed = url if isinstance(url, URL) else resolve(url, registered=registered)
    scheme = parsed.scheme
    if scheme in registered:
        if not parsed.raw_host:
            return Origin.opaque()
        return Origin.tuple(scheme, parsed.raw_host)
    if scheme in TUPLE_SCHEMES:
        return _tuple_origin(parsed)
    if scheme == "blob":
        inner_text = str(parsed)[len("blob:"):]
        try:
            inner = resolve(inner_text)
        except ValueError:
            return Origin.opaque()
        if inner.scheme in ("http", "https"):
            return _tuple_origin(inner)
    return Origin.opaque()
