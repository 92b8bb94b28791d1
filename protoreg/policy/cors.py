"""CORS decisions from the WHATWG Fetch standard (pure, no I/O).

Which requests are simple and which need a preflight, whether a preflight or actual response passes the CORS
check for an initiator origin and credentials mode, which response headers a cross-origin caller may see, and
what a ``no-cors`` opaque response looks like. Failures raise :class:`~protoreg.errors.PolicyError` saying
exactly which header was missing or wrong and what the handler must send.

Header arguments may be a ``Mapping`` (a ``dict``), a multidict (``CIMultiDict``, ``CIMultiDictProxy``) or an
iterable of ``(name, value)`` pairs. Names match case-insensitively; repeated headers are combined with ``",
"`` as Fetch's "get" does, so two ``Access-Control-Allow-Origin`` headers fail the check, as in browsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from protoreg.errors import PolicyError

__all__ = [
    "OPAQUE_BODY",
    "OPAQUE_HEADERS",
    "OPAQUE_STATUS",
    "SAFELISTED_RESPONSE_HEADERS",
    "check_preflight",
    "cors_check",
    "cors_filtered_headers",
    "cors_unsafe_request_header_names",
    "is_cors_safelisted_method",
    "is_cors_safelisted_request_header",
    "needs_preflight",
    "preflight_request_headers",
]

#: A ``no-cors`` cross-origin response is opaque: status 0, no headers, an empty body (Fetch "opaque filtered
#: response"); the caller learns only that something answered.
OPAQUE_STATUS: Final = 0
OPAQUE_HEADERS: Final[tuple[tuple[str, str], ...]] = ()
OPAQUE_BODY: Final = b""
#: Fetch's CORS-safelisted response-header names: readable cross-origin without Access-Control-Expose-Headers.
SAFELISTED_RESPONSE_HEADERS: Final = frozenset({"cache-control", "content-language", "content-length",
                                                "content-type", "expires", "last-modified", "pragma"})
_FORBIDDEN_RESPONSE: Final = frozenset({"set-cookie", "set-cookie2"})
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "POST"})
# Fetch "CORS-unsafe request-header byte": controls other than HTAB, and "():<>?@[\]{} and DEL.
_UNSAFE_BYTES: Final = re.compile(r'[\x00-\x08\x0a-\x1f"():<>?@\[\\\]{}\x7f]')
_LANGUAGE: Final = re.compile(r"[0-9A-Za-z *,\-.;=]*")
_SIMPLE_RANGE: Final = re.compile(r"bytes=([0-9]+)-([0-9]*)")
_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HTTP_WS: Final = "\t\n\r "
_NON_WILDCARD: Final = "authorization"  # Fetch "CORS non-wildcard request-header name"
_MAX_VALUE: Final = 128
_MAX_SAFELISTED_TOTAL: Final = 1024


def _byte_len(value: str) -> int:
    """Length of the header value's bytes (isomorphic encoding; UTF-8 when it has characters above U+00FF)."""
    try:
        return len(value.encode("latin-1"))
    except UnicodeEncodeError:
        return len(value.encode("utf-8"))


def is_cors_safelisted_method(method: str) -> bool:
    """``GET``, ``HEAD`` or ``POST``, compared case-sensitively as Fetch does (normalize ``get`` first)."""
    return method in _SAFE_METHODS


def is_cors_safelisted_request_header(name: str, value: str) -> bool:
    """Fetch's "CORS-safelisted request-header": a value of at most 128 bytes that passes the per-name rules.

    ``Accept``: no CORS-unsafe byte. ``Accept-Language``/``Content-Language``: only ``0-9A-Za-z *,-.;=``.
    ``Content-Type``: no unsafe byte, and a MIME type whose essence is ``application/x-www-form-urlencoded``,
    ``multipart/form-data`` or ``text/plain`` (parameters allowed). ``Range``: a single ``bytes=N-`` or
    ``bytes=N-M`` range with N <= M. Any other name is not safelisted.
    """
    if _byte_len(value) > _MAX_VALUE:
        return False
    name = name.lower()
    if name == "accept":
        return not _UNSAFE_BYTES.search(value)
    if name in ("accept-language", "content-language"):
        return _LANGUAGE.fullmatch(value) is not None
    if name == "content-type":
        return not _UNSAFE_BYTES.search(value) and _mime_essence(value) in _FORM_TYPES
    if name == "range":
        match = _SIMPLE_RANGE.fullmatch(value)
        return match is not None and (not match[2] or int(match[1]) <= int(match[2]))
    return False


def _mime_essence(value: str) -> str | None:
    """The essence of WHATWG MIME Sniffing's "parse a MIME type" (parameters don't change it), or None."""
    type_, slash, rest = value.strip(_HTTP_WS).partition("/")
    subtype = rest.split(";", 1)[0].rstrip(_HTTP_WS)
    if not slash or not _TOKEN.fullmatch(type_) or not _TOKEN.fullmatch(subtype):
        return None
    return f"{type_}/{subtype}".lower()


def cors_unsafe_request_header_names(headers: Iterable[tuple[str, str]]) -> list[str]:
    """Fetch's "CORS-unsafe request-header names": sorted, lowercased, unique.

    Every header that isn't safelisted, plus all the safelisted ones when their values total over 1024 bytes.
    """
    unsafe: set[str] = set()
    potentially: set[str] = set()
    total = 0
    for name, value in headers:
        if is_cors_safelisted_request_header(name, value):
            potentially.add(name.lower())
            total += _byte_len(value)
        else:
            unsafe.add(name.lower())
    if total > _MAX_SAFELISTED_TOTAL:
        unsafe |= potentially
    return sorted(unsafe)


def needs_preflight(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a cross-origin ``cors`` request needs a preflight (a non-safelisted method or header)."""
    return not is_cors_safelisted_method(method) or bool(cors_unsafe_request_header_names(headers))


def preflight_request_headers(origin: str, method: str,
                              headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of the OPTIONS preflight for a request of ``method`` with ``headers`` from ``origin``.

    ``Access-Control-Request-Headers`` lists the CORS-unsafe names joined by ``,``; it is left out when there
    are none.
    """
    out = [("Origin", origin), ("Accept", "*/*"), ("Access-Control-Request-Method", method)]
    names = cors_unsafe_request_header_names(headers)
    if names:
        out.append(("Access-Control-Request-Headers", ",".join(names)))
    return out


def _get(headers: Any, name: str) -> str | None:
    """Fetch's "get": every value of ``name`` combined with ``", "``, or None when absent."""
    if hasattr(headers, "getall"):
        values = list(headers.getall(name, ()))
    else:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        lowered = name.lower()
        values = [v for k, v in pairs if k.lower() == lowered]
    return ", ".join(v.strip(_HTTP_WS) for v in values) if values else None


def _extract_list(headers: Any, name: str, *, where: str, url: str | None) -> list[str]:
    """Fetch's "extracting header list values" for a ``#token`` header; a malformed item fails the check."""
    value = _get(headers, name)
    items = [item.strip(_HTTP_WS) for item in (value or "").split(",")]
    items = [item for item in items if item]
    bad = next((item for item in items if not _TOKEN.fullmatch(item)), None)
    if bad is not None:
        example = "PUT, DELETE" if name.endswith("Methods") else "Content-Type, X-Custom"
        raise PolicyError(f"{where} failed: {name} is {value!r}, and {bad!r} is not an HTTP token, so the "
                          f"whole header is invalid. {_handler(url)} must send a comma-separated list, e.g. "
                          f'"{name}: {example}"')
    return items


def _target(url: str | None) -> str:
    return f" to {url}" if url else ""


def _handler(url: str | None) -> str:
    """"The handler for web+b" when the URL names the scheme, else "The handler"."""
    scheme = url.partition(":")[0] if url and ":" in url else ""
    return f"The handler for {scheme}" if scheme else "The handler"


def _cors_problem(headers: Any, origin: str, credentials: bool, url: str | None) -> str | None:
    """Why Fetch's "CORS check" fails and what the handler must send, or None when it passes."""
    fix = f'send "Access-Control-Allow-Origin: {origin}"' + ("" if credentials else ' (or "*")')
    allow = _get(headers, "Access-Control-Allow-Origin")
    if allow is None:
        return (f"the response has no Access-Control-Allow-Origin header. {_handler(url)} must {fix} to "
                "allow it")
    if allow == "*" and not credentials:
        return None
    if allow != origin:
        if allow == "*":
            why = "Access-Control-Allow-Origin is '*', which doesn't cover a request with credentials"
        elif "," in allow:
            why = f"Access-Control-Allow-Origin holds several values ({allow!r}), but only one is allowed"
        else:
            why = f"Access-Control-Allow-Origin is {allow!r}, not {origin!r}"
        return f"{why}. {_handler(url)} must {fix} to allow it"
    if credentials and _get(headers, "Access-Control-Allow-Credentials") != "true":
        return (f"the request has credentials and Access-Control-Allow-Credentials is not 'true'. "
                f'{_handler(url)} must send "Access-Control-Allow-Credentials: true" to allow it')
    return None


def cors_check(headers: Any, *, origin: str, credentials: bool = False, url: str | None = None) -> None:
    """Fetch's "CORS check": raises PolicyError unless the response lets ``origin`` read it.

    ``Access-Control-Allow-Origin`` must be exactly ``origin``, or ``*`` when ``credentials`` is False; with
    credentials, ``Access-Control-Allow-Credentials`` must also be ``true``. ``url`` only goes into the
    message.
    """
    problem = _cors_problem(headers, origin, credentials, url)
    if problem is not None:
        raise PolicyError(f"cross-origin fetch from {origin}{_target(url)} was blocked by CORS: {problem}")


def check_preflight(status: int, headers: Any, *, origin: str, method: str,
                    request_headers: Iterable[tuple[str, str]], credentials: bool = False,
                    url: str | None = None) -> None:
    """Fetch's CORS-preflight fetch, the steps after the OPTIONS response: raises PolicyError when it fails.

    The status must be ok (2xx) and the CORS check pass; ``method`` must be safelisted, listed in
    ``Access-Control-Allow-Methods`` (case-sensitive), or covered by ``*`` without credentials; each
    CORS-unsafe request header must be listed in ``Access-Control-Allow-Headers`` (case-insensitive) or
    covered by ``*`` without credentials, except ``Authorization``, which ``*`` never covers.
    """
    where = f"CORS preflight (OPTIONS) from {origin}{_target(url)}"
    if not 200 <= status <= 299:
        raise PolicyError(f"{where} failed: the handler answered {status}, not an ok status. {_handler(url)} "
                          "must answer OPTIONS requests with a 2xx status and Access-Control-Allow-* headers")
    problem = _cors_problem(headers, origin, credentials, url)
    if problem is not None:
        raise PolicyError(f"{where} failed: {problem}")
    methods = _extract_list(headers, "Access-Control-Allow-Methods", where=where, url=url)
    if (method not in methods and not is_cors_safelisted_method(method)
            and (credentials or "*" not in methods)):
        star = " ('*' doesn't cover requests with credentials)" if "*" in methods else ""
        raise PolicyError(f"{where} failed: method {method} is not in Access-Control-Allow-Methods "
                          f"({', '.join(methods) or 'absent'}){star}. {_handler(url)} must send "
                          f'"Access-Control-Allow-Methods: {method}"')
    allowed = {name.lower() for name in _extract_list(headers, "Access-Control-Allow-Headers", where=where,
                                                      url=url)}
    # Authorization is never safelisted, so it is always among the unsafe names; '*' never covers it.
    for name in cors_unsafe_request_header_names(request_headers):
        if name in allowed or ("*" in allowed and not credentials and name != _NON_WILDCARD):
            continue
        why = ""
        if "*" in allowed:
            why = (" ('*' never covers Authorization)" if name == _NON_WILDCARD
                   else " ('*' doesn't cover requests with credentials)")
        raise PolicyError(f"{where} failed: request header {name!r} is not in Access-Control-Allow-Headers "
                          f"({', '.join(sorted(allowed)) or 'absent'}){why}. {_handler(url)} must send "
                          f'"Access-Control-Allow-Headers: {name}"')


def cors_filtered_headers(headers: Iterable[tuple[str, str]], *,
                          credentials: bool = False) -> list[tuple[str, str]]:
    """The headers a cross-origin caller may read (Fetch "CORS filtered response").

    The CORS-safelisted response headers, plus the names in ``Access-Control-Expose-Headers`` (``*`` means
    every header when ``credentials`` is False). ``Set-Cookie`` and ``Set-Cookie2`` are never exposed. A
    malformed ``Access-Control-Expose-Headers`` exposes nothing beyond the safelist, as in Fetch.
    """
    items = list(headers)
    raw = _get(items, "Access-Control-Expose-Headers")
    exposed = {item.strip(_HTTP_WS).lower() for item in (raw or "").split(",") if item.strip(_HTTP_WS)}
    if any(not _TOKEN.fullmatch(name) for name in exposed):
        exposed = set()
    expose_all = "*" in exposed and not credentials
    return [(n, v) for n, v in items
            if n.lower() not in _FORBIDDEN_RESPONSE
            and (n.lower() in SAFELISTED_RESPONSE_HEADERS or expose_all or n.lower() in exposed)]
