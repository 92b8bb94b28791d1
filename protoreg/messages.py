"""Fetch-style ``Request`` and ``Response``: what handler scripts are written against.

A handler receives a :class:`Request` and returns a :class:`Response`::

    async def handleRequest(request: Request) -> Response:
        if request.url.path == "/":
            return Response("<h1>hi</h1>", headers={"content-type": "text/html"})
        return Response.error(404)

Bodies may be ``None``, ``bytes``, ``str`` (sent as UTF-8) or an async iterable of ``bytes`` (streamed, never
buffered whole). A streamed body may also yield :class:`FileSlice` items: bytes of a file in the extension's data
dir that the parent reads, verifies against the sha256 given and sends itself, so they never cross the process
boundary (the ipfs handler streams verified blocks this way). The same validation rules (:func:`check_status`,
:func:`check_header`) run in the worker, to give the handler author a precise error, and again in the parent, which
never trusts the worker.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Final, TypeAlias

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = ["Body", "FileSlice", "HeadersInit", "Request", "Response", "check_header", "check_status"]

Body: TypeAlias = "bytes | bytearray | memoryview | str | AsyncIterable[bytes] | None"
HeadersInit: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | None"

# RFC 9110 token for field names; field values may not contain CR, LF or NUL.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Characters a field value may not hold (RFC 9110: VCHAR, obs-text, SP and HTAB only): every other C0 control, DEL.
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def check_status(status: object) -> str | None:
    """None when ``status`` is a valid HTTP status (an int in 200..599), else what is wrong with it."""
    if isinstance(status, bool) or not isinstance(status, int):
        return f"status must be an int, got {type(status).__name__} {status!r}"
    if not 200 <= status <= 599:
        return f"status {status} is outside 200..599 (informational 1xx statuses can't be returned)"
    return None


def check_header(name: object, value: object) -> str | None:
    """None when (name, value) is a valid header field, else what is wrong with it."""
    if not isinstance(name, str) or not isinstance(value, str):
        return f"header name and value must be str, got {type(name).__name__}/{type(value).__name__}"
    if not _TOKEN.match(name):
        return f"header name {name!r} is not an HTTP token"
    bad = _BAD_VALUE.search(value)
    if bad:
        what = "CR, LF or NUL" if bad.group() in "\r\n\x00" else f"the control character {bad.group()!r}"
        return (f"header {name!r} has a value containing {what} ({value!r}): only visible characters, spaces and "
                "tabs are allowed in a header value (CR, LF or NUL would be header injection)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"header {name!r} has a value that can't be encoded as UTF-8 ({value!r}, a lone surrogate)"
    return None


def _headers(init: HeadersInit) -> CIMultiDict[str]:
    if init is None:
        return CIMultiDict()
    items = init.items() if isinstance(init, Mapping) else init
    return CIMultiDict(list(items))


class Request:
    """An incoming request to a handler.

    ``url`` is resolved (WHATWG rules, no port), ``headers`` are case-insensitive and read-only, and ``origin`` is
    the serialized initiator origin (``"web+a://x"``) or None for a request with no initiator.
    """

    __slots__ = ("_body", "_cache", "headers", "method", "origin", "url")

    def __init__(
        self,
        url: URL | str,
        *,
        method: str = "GET",
        headers: HeadersInit = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        origin: str | None = None,
    ) -> None:
        self.url = url if isinstance(url, URL) else URL(url, encoded=True)
        self.method = method.upper()
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(_headers(headers))
        self.origin = origin
        self._body = body
        self._cache: bytes | None = None

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as chunks, as they arrive. A streamed body can be consumed only once."""
        if self._cache is not None or self._body is None or isinstance(self._body, bytes):
            data = self._cache if self._cache is not None else (self._body or b"")
            if data:
                yield data  # type: ignore[misc]
            return
        body, self._body = self._body, None
        if body is None:
            raise RuntimeError("the request body was already consumed by an earlier stream()")
        async for chunk in body:
            yield chunk

    async def read(self) -> bytes:
        """The whole body (buffered). Use :meth:`stream` for large bodies."""
        if self._cache is None:
            self._cache = b"".join([chunk async for chunk in self.stream()])
        return self._cache

    async def text(self, encoding: str = "utf-8") -> str:
        return (await self.read()).decode(encoding)

    async def json(self) -> Any:
        return _json.loads(await self.read())

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class FileSlice:
    """A piece of a streamed body that the parent sends from the extension's data dir: bytes
    ``[offset, offset + length)`` of the file at ``path`` (relative to ``runtime.data_dir()``; no symlinks on the
    way), whose *whole* content has the sha256 ``sha256`` (hex). The parent reads the file, checks the hash and
    only then sends the bytes: a corrupt or changed file fails the response, it is never sent. ``length=None``:
    to the end of the file. Files over 1 MiB are read and checked by the worker instead (the same result)."""

    __slots__ = ("length", "offset", "path", "sha256")

    def __init__(self, path: str, sha256: str, offset: int = 0, length: int | None = None) -> None:
        self.path = path
        self.sha256 = sha256
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return f"<FileSlice {self.path} [{self.offset}:{'' if self.length is None else self.offset + self.length}]>"


class Response:
    """A handler's response: ``Response(body=None, status=200, headers=None)``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: Body = None, status: int = 200, headers: HeadersInit = None) -> None:
        self.body = body
        self.status = status
        self.headers: CIMultiDict[str] = _headers(headers)
        if isinstance(body, str) and "content-type" not in self.headers:
            self.headers["Content-Type"] = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: HeadersInit = None) -> Response:
        resp = cls(_json.dumps(data).encode(), status, headers)
        resp.headers.setdefault("Content-Type", "application/json")
        return resp

    @classmethod
    def redirect(cls, url: str | URL, status: int = 302, headers: HeadersInit = None) -> Response:
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"redirect status must be 301, 302, 303, 307 or 308, got {status}")
        resp = cls(None, status, headers)
        resp.headers["Location"] = str(url)
        return resp

    @classmethod
    def error(cls, status: int = 500, message: str | None = None, headers: HeadersInit = None) -> Response:
        from http import HTTPStatus

        if message is None:
            try:
                message = HTTPStatus(status).phrase
            except ValueError:
                message = "error"
        return cls(message, status, headers)

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
