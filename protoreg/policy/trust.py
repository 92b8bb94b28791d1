"""W3C Secure Contexts: "Is origin potentially trustworthy?", "Is url potentially trustworthy?" and the
secure-context check over a chain of ancestors (pure, no I/O).

A registered scheme whose manifest sets ``uriIsTrustworthy: true`` counts as authenticated (spec step 7, "the user
agent authenticates the scheme"). ``file:`` URLs are treated as potentially trustworthy, as Chromium and Firefox do
(their WHATWG origin is opaque, so the literal algorithm would stop at step 1; the spec leaves it to the UA).
``about:blank`` and ``about:srcdoc`` count with any query or fragment, as Chromium does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Sequence

from yarl import URL

from protoreg.policy.origins import Origin, origin_of
from protoreg.policy.urls import resolve

__all__ = ["is_potentially_trustworthy", "is_secure_context"]

Target = Origin | str | URL


def _origin_trustworthy(origin: Origin, trustworthy_schemes: Container[str]) -> bool:
    if origin.is_opaque:
        return False
    if origin.scheme in ("https", "wss"):
        return True
    host = origin.host or ""
    if host[:1].isdigit() or ":" in host or host.startswith("["):  # only then can it be an IP literal
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            pass
    if host in ("localhost", "localhost.") or host.endswith((".localhost", ".localhost.")):
        return True
    if origin.scheme == "file":
        return True
    return origin.scheme in trustworthy_schemes


def is_potentially_trustworthy(target: Target, *, registered: Container[str] = frozenset(),
                               trustworthy_schemes: Container[str] = frozenset()) -> bool:
    """Run "Is origin potentially trustworthy?" for an Origin, or "Is url potentially trustworthy?" for a URL."""
    if isinstance(target, Origin):
        return _origin_trustworthy(target, trustworthy_schemes)
    url = target if isinstance(target, URL) else resolve(target, registered=registered)
    if url.scheme == "about" and url.path in ("blank", "srcdoc"):
        return True
    if url.scheme in ("data", "file"):
        return True
    return _origin_trustworthy(origin_of(url, registered=registered), trustworthy_schemes)


def is_secure_context(chain: Sequence[Target], *, registered: Container[str] = frozenset(),
                      trustworthy_schemes: Container[str] = frozenset()) -> bool:
    """A document is a secure context only if it and every ancestor are potentially trustworthy."""
    if not chain:
        raise ValueError("is_secure_context needs at least the document itself")
    return all(is_potentially_trustworthy(t, registered=registered, trustworthy_schemes=trustworthy_schemes)
               for t in chain)
