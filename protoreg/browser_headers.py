"""The headers a browser receives for a custom-scheme response: one decision shared by every browser front end.

``Session.fetch`` has already merged the CSP (baseline + extension + handler) and applied CORS filtering; what a
browser front end adds on top is the same whether the browser reaches protoreg through the HTTP gateway or through a
native scheme handler inside the engine (:mod:`protoreg.embed.qt`):

- hop-by-hop and framing headers are dropped (the front end frames the body itself);
- ``X-Content-Type-Options: nosniff`` on every response, so a handler can't have its bytes sniffed into a script;
- ``Origin-Agent-Cluster: ?1``, so a handler can't opt its pages into ``document.domain`` merging (a front end whose
  engine gives every origin its own agent cluster anyway may leave it out: ``agent_cluster=False``);
- URLs and origins in ``Location``, ``Content-Location`` and ``Access-Control-Allow-Origin`` are passed through
  ``rewrite`` (the gateway maps ``ipfs://a`` to its ``http://a.ipfs.….localhost`` origin; a native front end keeps
  them as they are), so the browser's own CORS check compares the origins it actually sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from multidict import CIMultiDict

__all__ = ["HOP_BY_HOP", "REWRITTEN", "browser_headers", "request_headers"]

#: Headers that describe one connection or its framing, never the resource.
HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                               "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
#: Response headers whose value is a URL or an origin that a front end may have to translate.
REWRITTEN: Final = frozenset({"location", "access-control-allow-origin", "content-location"})


def browser_headers(headers: Iterable[tuple[str, str]], *, rewrite: Callable[[str], str] | None = None,
                    agent_cluster: bool = True) -> CIMultiDict[str]:
    """The response headers to hand to a browser for a ``FetchResponse``'s ``headers`` (already policy-applied)."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname == "origin-agent-cluster":
            continue
        if rewrite is not None and lname in REWRITTEN:
            value = rewrite(value)
        out.add(name, value)
    out["X-Content-Type-Options"] = "nosniff"
    if agent_cluster:
        out["Origin-Agent-Cluster"] = "?1"
    return out


def request_headers(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """A browser's request headers as a handler may see them: no hop-by-hop headers, no ``Origin`` (the front end
    passes the initiator separately, translated to its custom origin when it is one)."""
    return CIMultiDict((k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() != "origin")
