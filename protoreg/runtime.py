"""Capabilities for handler scripts, inside the worker: ``fetch``, ``storage`` and ``data_dir``.

Each call goes to the broker in the parent over the worker's channel; the parent checks it against the
extension's grants (host_permissions, the "storage" permission), performs it, and writes an audit record. A refused
call raises :class:`protoreg.errors.PermissionDenied` with what to add to manifest.json.

    from protoreg import runtime

    async def handleRequest(request):
        resp = await runtime.fetch("https://api.example.org/data")     # needs host_permissions
        await runtime.storage.set("visits", b"1")                       # needs "storage"; per origin
        blocks = runtime.data_dir()                                      # needs "storage"; per extension
"""

from __future__ import annotations

import base64
import json as _json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from protoreg.errors import MessageError, PermissionDenied, UnknownMessage
from protoreg.sandboxes import MAX_MESSAGE

__all__ = ["FetchResult", "FetchStream", "MessageError", "SandboxHandle", "UnknownMessage", "data_dir", "fetch",
           "sandbox", "storage"]

#: Set by the worker when it starts: sends a CALL frame for the request being served and awaits the RESULT.
_call: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None
_data_dir: str | None = None


async def _invoke(cap: str, args: dict[str, Any]) -> Any:
    if _call is None:
        raise RuntimeError("protoreg.runtime is only available inside a handler running in a protoreg worker")
    return await _call(cap, args)


class FetchResult:
    """The response of a brokered fetch (buffered, at most 16 MiB)."""

    def __init__(self, status: int, url: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.url = url
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers))
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, "replace")

    def json(self) -> Any:
        return _json.loads(self.body)


class FetchStream:
    """A brokered fetch whose body is streamed (``runtime.fetch(url, stream=True)``): any size, bounded memory.

    The parent reads the upstream only as fast as this worker pulls (``async for chunk in resp.iter_chunks()``);
    close it (``await resp.aclose()``, or use ``async with``) when done early, or the parent closes it after
    60 idle seconds. It holds one of the extension's concurrent-fetch slots while open."""

    def __init__(self, status: int, url: str, headers: list[tuple[str, str]], stream_id: int) -> None:
        self.status = status
        self.url = url
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers))
        self._id: int | None = stream_id

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    async def iter_chunks(self, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        try:
            while self._id is not None:
                out = await _invoke("fetch.read", {"stream": self._id, "max": size})
                if out["eof"]:
                    self._id = None
                raw = out["data"]
                data = raw if isinstance(raw, bytes) else base64.b64decode(raw)
                if data:
                    yield data
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        return b"".join([c async for c in self.iter_chunks()])

    async def aclose(self) -> None:
        sid, self._id = self._id, None
        if sid is not None:
            await _invoke("fetch.close", {"stream": sid})

    async def __aenter__(self) -> FetchStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def fetch(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                body: bytes | str | None = None, stream: bool = False) -> Any:
    """Fetch an http(s) URL through the parent; allowed only for the manifest's host_permissions.

    Returns a :class:`FetchResult` (body buffered, at most 16 MiB), or with ``stream=True`` a
    :class:`FetchStream` whose body is pulled in chunks."""
    payload = body.encode() if isinstance(body, str) else body
    out = await _invoke("fetch", {"url": str(url), "method": method, "headers": list((headers or {}).items()),
                                  "body": base64.b64encode(payload).decode() if payload else None,
                                  **({"stream": True} if stream else {})})
    if stream:
        return FetchStream(out["status"], out["url"], [tuple(h) for h in out["headers"]],  # type: ignore[misc]
                           out["stream"])
    return FetchResult(out["status"], out["url"], [tuple(h) for h in out["headers"]],  # type: ignore[misc]
                       base64.b64decode(out["body"]))


class _Storage:
    """Key-value storage of the origin being served (``scheme://host``), kept by the parent."""

    async def get(self, key: str) -> bytes | None:
        value = await _invoke("storage.get", {"key": key})
        return None if value is None else base64.b64decode(value)

    async def set(self, key: str, value: bytes | str) -> None:
        raw = value.encode() if isinstance(value, str) else value
        await _invoke("storage.set", {"key": key, "value": base64.b64encode(raw).decode()})

    async def delete(self, key: str) -> bool:
        return bool(await _invoke("storage.delete", {"key": key}))

    async def keys(self) -> list[str]:
        return list(await _invoke("storage.keys", {}))


storage = _Storage()


def data_dir() -> Path:
    """The extension's own read-write directory (needs the "storage" permission)."""
    if _data_dir is None:
        raise PermissionDenied('this extension has no data directory: add "storage" to "permissions" in '
                               "manifest.json to get one; if it has it, the store did not grant it or the user's "
                               "decision for storage was not allow when this worker started (protoreg grants ID)")
    return Path(_data_dir)


class SandboxHandle:
    """A named sandbox of this extension (manifest.json ``sandboxes``), reached only by JSON messages."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def call(self, message: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """Send ``message`` with a JSON ``payload`` to the sandbox's ``handleMessage(name, payload)`` and return its
        JSON reply. Raises :class:`~protoreg.errors.MessageError` (``.kind``: "undeclared", "unknown_message",
        "too_large", "timeout", "crashed", "not_json", "failed") or PermissionDenied."""
        try:
            size = len(_json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise MessageError(f"the payload for {self.name}:{message} is not a JSON value: {exc}",
                               "not_json") from None
        if size > MAX_MESSAGE:
            raise MessageError(f"the payload for {self.name}:{message} is {size} bytes of JSON, over the "
                               f"{MAX_MESSAGE}-byte limit of sandbox messages", "too_large")
        return await _invoke("sandbox.call", {"sandbox": self.name, "message": str(message), "payload": payload,
                                              **({"timeout": float(timeout)} if timeout is not None else {})})

    def __repr__(self) -> str:
        return f"<sandbox {self.name}>"


def sandbox(name: str) -> SandboxHandle:
    """The named sandbox ``name`` of this extension: ``await runtime.sandbox("net").call("get_block", {...})``."""
    return SandboxHandle(name)
