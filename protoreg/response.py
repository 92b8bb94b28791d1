"""``FetchResponse``: what ``Session.fetch`` returns to an embedding app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from protoreg.errors import HandlerError, HandlerTimeout

if TYPE_CHECKING:
    from protoreg.cache import Collector
    from protoreg.ipc import InboundBody
    from protoreg.policy.origins import Origin
    from protoreg.worker.process import WorkerStream

__all__ = ["FetchResponse", "ResponseType"]

ResponseType = Literal["basic", "cors", "opaque", "error"]


class FetchResponse:
    """A response to ``Session.fetch``: head attributes plus a body read whole or streamed.

    ``type`` follows Fetch: ``basic`` (same-origin or no initiator), ``cors`` (cross-origin, CORS-filtered headers),
    ``opaque`` (``no-cors`` cross-origin: status 0, no headers, empty body) or ``error`` (the handler or its worker
    failed; ``status`` is 500/502/504, ``error`` holds the exception and the body its message).
    """

    def __init__(
        self,
        *,
        url: URL,
        status: int,
        headers: Iterable[tuple[str, str]],
        type: ResponseType,
        origin: Origin,
        secure_context: bool,
        body: bytes = b"",
        stream: WorkerStream | None = None,
        timeout: float | None = None,
        redirected: bool = False,
        error: HandlerError | None = None,
        collector: Collector | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self._headers: Iterable[tuple[str, str]] | CIMultiDictProxy[str] = headers  # built when first read
        self.type: ResponseType = type
        self.origin = origin
        self.secure_context = secure_context
        self.redirected = redirected
        self.error = error
        self._buffered: bytes | None = body if stream is None else None
        self._stream = stream
        self._timeout = timeout
        self._consumed = False
        #: Gets the whole body once it has been read to its end (the session stores immutable answers this way:
        #: protoreg/cache.py), within the cache's limits; abandoned if the body is cut off or left unread.
        self._collector = collector

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The response headers, case-insensitive and read-only."""
        headers = self._headers
        if not isinstance(headers, CIMultiDictProxy):
            headers = self._headers = CIMultiDictProxy(CIMultiDict(list(headers)))
        return headers

    @property
    def body_complete(self) -> bool:
        """True when the whole body is already here, so read() returns without waiting for the worker."""
        if self._stream is None:
            return True
        return self._stream.body is None or self._stream.body.complete

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives from the worker, with backpressure; consumable once."""
        if self._stream is None:
            if self._buffered:
                yield self._buffered
            return
        if self._consumed:
            raise RuntimeError("the response body was already consumed")
        self._consumed = True
        st, self._stream = self._stream, None
        body: InboundBody | None = st.body
        if body is None:
            return
        col, kept = self._collector, []
        try:
            while True:
                try:
                    chunk = await body.next_chunk(self._timeout)
                except StopAsyncIteration:
                    if col is not None:
                        self._collector = None
                        col.finish(b"".join(kept))
                    return
                except TimeoutError:
                    raise HandlerTimeout(
                        f"handler for {st.worker.label} sent no body data for {self._timeout:g}s "
                        f"while answering {self.url}", extension=st.worker.label) from None
                if col is not None:
                    if col.add(len(chunk)):
                        kept.append(chunk)
                    else:  # over the entry or the cache's collect limit: not kept, and nothing held
                        col, kept = None, []
                        self._collector = None
                yield chunk
        finally:
            if self._collector is not None:
                self._collector.abandon()
                self._collector = None
            if not body.finished:
                st.abort()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.stream()

    async def read(self) -> bytes:
        if self._buffered is None:
            st = self._stream
            if st is not None and not self._consumed and st.body is not None and st.body.complete:
                # The whole body is already here (a small response): take it without an async generator.
                self._consumed, self._stream = True, None
                self._buffered = st.body.take_all()
                if self._collector is not None:
                    col, self._collector = self._collector, None
                    col.finish(self._buffered)
            else:
                self._buffered = b"".join([chunk async for chunk in self.stream()])
        return self._buffered

    async def text(self, encoding: str = "utf-8") -> str:
        return (await self.read()).decode(encoding, "replace")

    async def json(self) -> Any:
        return json.loads(await self.read())

    def close(self) -> None:
        """Release the response; an unread streamed body is aborted (the handler's task is cancelled)."""
        st, self._stream = self._stream, None
        if self._collector is not None:
            self._collector.abandon()
            self._collector = None
        if st is not None and st.body is not None and not st.body.finished:
            st.abort()

    async def __aenter__(self) -> FetchResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FetchResponse {self.status} {self.type} {self.url}>"
