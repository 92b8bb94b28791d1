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
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from protoreg.errors import PermissionDenied

__all__ = ["FetchResult", "data_dir", "fetch", "storage"]

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


async def fetch(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                body: bytes | str | None = None) -> FetchResult:
    """Fetch an http(s) URL through the parent; allowed only for the manifest's host_permissions."""
    payload = body.encode() if isinstance(body, str) else body
    out = await _invoke("fetch", {"url": str(url), "method": method, "headers": list((headers or {}).items()),
                                  "body": base64.b64encode(payload).decode() if payload else None})
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
