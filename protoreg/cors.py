"""CORS decisions from the WHATWG Fetch standard (pure, no I/O).

Which requests are simple and which need a preflight, whether a preflight or actual response passes the CORS check
for an initiator origin and credentials mode, which response headers a cross-origin caller may see, and what a
``no-cors`` opaque response looks like. Failures raise :class:`~protoreg.errors.PolicyError` saying exactly which
header was missing or wrong and what the handler must send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from multidict import CIMultiDict

from protoreg.errors import PolicyError

__all__ = [
    "OPAQUE_STATUS",
    "check_preflight",
    "cors_check",
    "cors_filtered_headers",
    "cors_unsafe_request_header_names",
    "is_cors_safelisted_method",
    "is_cors_safelisted_request_header",
    "needs_preflight",
    "preflight_request_headers",
]

#: A ``no-cors`` cross-origin response is opaque: status 0, no headers, an empty body.
OPAQUE_STATUS: Final = 0
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "POST"})
_UNSAFE_BYTES: Final = frozenset(chr(c) for c in range(0x20) if c != 0x09) | set('"():<>?@[\\]{}\x7f')
_LANGUAGE: Final = re.compile(r"^[0-9A-Za-z *,\-.;=]*$")
_SIMPLE_RANGE: Final = re.compile(r"^bytes=(?:[0-9]+-[0-9]*)$")
_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_SAFE_RESPONSE: Final = frozenset({"cache-control", "content-language", "content-length", "content-type",
                                   "expires", "last-modified", "pragma"})

Headers = Mapping[str, str] | CIMultiDict[str]


def is_cors_safelisted_method(method: str) -> bool:
    return method in _SAFE_METHODS


def is_cors_safelisted_request_header(name: str, value: str) -> bool:
    """Fetch's "CORS-safelisted request-header" (value length ≤ 128 and the per-name value rules)."""
    if len(value.encode("latin-1", "replace")) > 128:
        return False
    name = name.lower()
    if name == "accept":
        return not any(c in _UNSAFE_BYTES for c in value)
    if name in ("accept-language", "content-language"):
        return bool(_LANGUAGE.match(value))
    if name == "content-type":
        if any(c in _UNSAFE_BYTES for c in value):
            return False
        essence = value.split(";", 1)[0].strip(" \t").lower()
        return essence in _FORM_TYPES
    if name == "range":
        return bool(_SIMPLE_RANGE.match(value)) and _range_ok(value)
    return False


def _range_ok(value: str) -> bool:
    start, _, end = value[6:].partition("-")
    return not end or int(start) <= int(end)


def cors_unsafe_request_header_names(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Fetch's "CORS-unsafe request-header names": sorted, lowercased, unique."""
    unsafe: set[str] = set()
    potentially: set[str] = set()
    size = 0
    for name, value in headers:
        if is_cors_safelisted_request_header(name, value):
            potentially.add(name.lower())
            size += len(value)
        else:
            unsafe.add(name.lower())
    if size > 1024:
        unsafe |= potentially
    return sorted(unsafe)


def needs_preflight(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    return not is_cors_safelisted_method(method) or bool(cors_unsafe_request_header_names(headers))


def preflight_request_headers(origin: str, method: str, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of the OPTIONS preflight for a request of ``method`` with ``headers`` from ``origin``."""
    out = [("Origin", origin), ("Accept", "*/*"), ("Access-Control-Request-Method", method)]
    names = cors_unsafe_request_header_names(headers)
    if names:
        out.append(("Access-Control-Request-Headers", ",".join(names)))
    return out


def _get(headers: Headers, name: str) -> str | None:
    if isinstance(headers, CIMultiDict) or hasattr(headers, "getone"):
        return headers.get(name)  # type: ignore[no-any-return]
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _list(value: str | None) -> list[str]:
    return [v.strip(" \t") for v in (value or "").split(",") if v.strip(" \t")]


def _target(url: str | None) -> str:
    return f" to {url}" if url else ""


def cors_check(headers: Headers, *, origin: str, credentials: bool = False, url: str | None = None) -> None:
    """Fetch's "CORS check": raises PolicyError unless the response allows ``origin`` to read it."""
    allow = _get(headers, "Access-Control-Allow-Origin")
    fix = f'send "Access-Control-Allow-Origin: {origin}"' + ("" if credentials else ' (or "*")')
    if allow is None:
        raise PolicyError(f"cross-origin fetch from {origin}{_target(url)} was blocked by CORS: the response has no "
                          f"Access-Control-Allow-Origin header. The handler must {fix} to allow it")
    allow = allow.strip(" \t")
    if allow == "*" and not credentials:
        return
    if allow != origin:
        why = ("'*' is not allowed for a request with credentials" if allow == "*"
               else f"Access-Control-Allow-Origin is {allow!r}, not {origin!r}")
        raise PolicyError(f"cross-origin fetch from {origin}{_target(url)} was blocked by CORS: {why}. "
                          f"The handler must {fix} to allow it")
    if credentials and _get(headers, "Access-Control-Allow-Credentials") != "true":
        raise PolicyError(f"cross-origin fetch with credentials from {origin}{_target(url)} was blocked by CORS: "
                          "Access-Control-Allow-Credentials is not 'true'. The handler must send "
                          '"Access-Control-Allow-Credentials: true" to allow it')


def check_preflight(status: int, headers: Headers, *, origin: str, method: str,
                    request_headers: Iterable[tuple[str, str]], credentials: bool = False,
                    url: str | None = None) -> None:
    """Fetch's CORS-preflight fetch, steps after the response: raises PolicyError when the preflight fails."""
    where = f"CORS preflight (OPTIONS) from {origin}{_target(url)}"
    if not 200 <= status <= 299:
        raise PolicyError(f"{where} failed: the handler answered {status}, not an ok status. It must answer "
                          "OPTIONS requests with 2xx and Access-Control-Allow-* headers")
    try:
        cors_check(headers, origin=origin, credentials=credentials, url=url)
    except PolicyError as exc:
        raise PolicyError(f"{where} failed: {exc}") from None
    methods = _list(_get(headers, "Access-Control-Allow-Methods"))
    if (method not in methods and not is_cors_safelisted_method(method)
            and (credentials or "*" not in methods)):
        raise PolicyError(f"{where} failed: method {method} is not in Access-Control-Allow-Methods "
                          f"({', '.join(methods) or 'absent'}). The handler must send "
                          f'"Access-Control-Allow-Methods: {method}"')
    allowed = {h.lower() for h in _list(_get(headers, "Access-Control-Allow-Headers"))}
    for name in cors_unsafe_request_header_names(request_headers):
        if name in allowed:
            continue
        if "*" in allowed and not credentials and name != "authorization":
            continue
        raise PolicyError(f"{where} failed: request header {name!r} is not in Access-Control-Allow-Headers "
                          f"({', '.join(sorted(allowed)) or 'absent'}). The handler must send "
                          f'"Access-Control-Allow-Headers: {name}"')


def cors_filtered_headers(headers: Iterable[tuple[str, str]], *, credentials: bool = False) -> list[tuple[str, str]]:
    """The headers a cross-origin caller may read: the CORS-safelisted ones plus Access-Control-Expose-Headers."""
    items = list(headers)
    exposed = {h.lower() for n, v in items if n.lower() == "access-control-expose-headers" for h in _list(v)}
    expose_all = "*" in exposed and not credentials
    return [(n, v) for n, v in items
            if n.lower() in _SAFE_RESPONSE or n.lower() in exposed
            or (expose_all and n.lower() not in ("set-cookie", "set-cookie2"))]
