"""The capability broker: the parent-side kernel for handler workers.

A worker asks for ``fetch``, ``storage`` or its data directory with a CALL frame. The broker takes the caller's
identity from the channel (which worker, serving which request stream, hence which extension and origin), never
from the message; checks the call against the extension's grants; performs it; records it in the audit log; and
answers with a RESULT frame. Denials are :class:`~protoreg.errors.PermissionDenied` with a message that says what
was tried, what forbade it, and what to change.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from protoreg.audit import AuditLog
from protoreg.errors import PermissionDenied
from protoreg.matchpatterns import MatchPattern, parse_pattern
from protoreg.storage import MAX_KEY, StorageStore

if TYPE_CHECKING:
    from protoreg.registry import Extension

__all__ = ["Broker", "Grants"]

log = logging.getLogger("protoreg.broker")

MAX_FETCH_BODY = 16 * 1024 * 1024
MAX_STORED_VALUE = 128 * 1024
MAX_REDIRECTS = 10


@dataclass(frozen=True)
class Grants:
    """What an extension may do. Today: what its manifest requests; the seam for a permission manager later."""

    permissions: frozenset[str]
    hosts: tuple[MatchPattern, ...]

    @classmethod
    def from_extension(cls, ext: Extension) -> Grants:
        manifest = ext.manifest
        return cls(frozenset(p for p in manifest.permissions if "://" not in p and p != "<all_urls>"),
                   tuple(parse_pattern(p) for p in manifest.granted_hosts))

    def allows_host(self, url: URL) -> bool:
        return any(p.matches(url) for p in self.hosts)


class _PinnedResolver(AbstractResolver):
    """Connect only to the addresses the broker already checked (no second DNS lookup, no rebinding)."""

    def __init__(self, infos: list[ResolveResult]) -> None:
        self._infos = infos

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [{**i, "port": port} for i in self._infos]  # type: ignore[typeddict-item]

    async def close(self) -> None:
        pass


def _describe(ext: Extension, scheme_hint: str | None) -> str:
    who = f"handler for {scheme_hint} " if scheme_hint else "handler "
    return f"{who}(extension {ext.id})"


class Broker:
    def __init__(self, *, audit: AuditLog | None = None, storage: StorageStore | None = None,
                 data_root: Path | None = None, allow_private_networks: bool = False) -> None:
        self.audit = audit or AuditLog()
        self.storage = storage or StorageStore()
        self.data_root = data_root
        self.allow_private_networks = allow_private_networks

    # -- grants -----------------------------------------------------------------------------------------------
    def grants(self, ext: Extension) -> Grants:
        return Grants.from_extension(ext)

    def data_dir(self, ext: Extension) -> Path | None:
        """The extension's read-write directory (created on demand) when it has the "storage" permission."""
        if self.data_root is None or "storage" not in self.grants(ext).permissions:
            return None
        # "ext-" keeps any id (even "..", which the manifest rules refuse anyway) a plain child of data_root.
        path = self.data_root / ("ext-" + "".join(c if c.isalnum() or c in "-_.@" else "_" for c in ext.id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def forget(self, ext: Extension) -> None:
        """Uninstall: remove the extension's storage partitions and data directory."""
        removed = self.storage.delete_extension(ext.id)
        if self.data_root is not None:
            path = self.data_dir(ext)
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        log.info("removed %d stored values and the data directory of %s", removed, ext.id)

    # -- calls ------------------------------------------------------------------------------------------------
    async def call(self, ext: Extension, origin: str, scheme: str | None, cap: str, args: dict[str, Any]) -> Any:
        """Run one capability call for ``ext`` serving a request of ``origin``; raise PermissionDenied."""
        if cap == "fetch":
            return await self._fetch(ext, origin, scheme, args)
        if cap.startswith("storage."):
            return self._storage(ext, origin, scheme, cap.removeprefix("storage."), args)
        raise ValueError(f"unknown capability {cap!r}")

    def _deny(self, ext: Extension, origin: str, cap: str, target: str, message: str) -> PermissionDenied:
        self.audit.record(ext.id, origin, cap, target, False, message)
        log.warning("%s", message)
        return PermissionDenied(message)

    def _storage(self, ext: Extension, origin: str, scheme: str | None, op: str, args: dict[str, Any]) -> Any:
        key = args.get("key", "")
        if not isinstance(key, str) or len(key) > MAX_KEY:
            raise ValueError("storage key must be a str of at most 1024 characters")
        if "storage" not in self.grants(ext).permissions:
            raise self._deny(ext, origin, f"storage.{op}", key, (
                f"{_describe(ext, scheme)} tried to use storage.{op}: the extension lacks the "
                f'"storage" permission in manifest.json. Add "storage" to "permissions" to allow it.'))
        self.audit.record(ext.id, origin, f"storage.{op}", key, True)
        if op == "get":
            value = self.storage.get(ext.id, origin, key)
            return None if value is None else base64.b64encode(value).decode()
        if op == "set":
            raw = base64.b64decode(args.get("value", ""), validate=True)
            if len(raw) > MAX_STORED_VALUE:
                raise PermissionDenied(f"storage.set of {len(raw)} bytes exceeds the {MAX_STORED_VALUE}-byte limit "
                                       "per value; split the value")
            self.storage.set(ext.id, origin, key, raw)
            return None
        if op == "delete":
            return self.storage.delete(ext.id, origin, key)
        if op == "keys":
            return self.storage.keys(ext.id, origin)
        raise ValueError(f"unknown storage operation {op!r}")

    async def _check_address(self, url: URL) -> list[ResolveResult]:
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise PermissionDenied(f"could not resolve {host}: {exc}") from None
        results: list[ResolveResult] = []
        for family, _type, proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(sockaddr[0])
            if not self.allow_private_networks and (ip.is_private or ip.is_loopback or ip.is_link_local
                                                    or ip.is_multicast or ip.is_reserved or ip.is_unspecified):
                kind = "loopback" if ip.is_loopback else "link-local" if ip.is_link_local else "private"
                raise PermissionDenied(
                    f"{host} resolves to {ip}, a {kind} address: refused to prevent server-side request forgery. "
                    "Set allow_private_networks=True in the host's WorkerConfig (protoreg serve/fetch: "
                    "--allow-private-networks) to allow it")
            results.append({"hostname": host, "host": str(ip), "port": port, "family": family, "proto": proto,
                            "flags": socket.AI_NUMERICHOST})
        return results

    async def _fetch(self, ext: Extension, origin: str, scheme: str | None, args: dict[str, Any]) -> Any:
        url_text = args.get("url")
        method = str(args.get("method", "GET")).upper()
        headers = args.get("headers") or []
        if not isinstance(url_text, str) or not isinstance(headers, list):
            raise ValueError("fetch needs a url string and a list of headers")
        body = base64.b64decode(args["body"], validate=True) if args.get("body") else None
        grants = self.grants(ext)
        url = URL(url_text)
        if url.scheme not in ("http", "https") or not url.host:
            raise self._deny(ext, origin, "fetch", url_text, (
                f"{_describe(ext, scheme)} tried to fetch {url_text}: only absolute http(s) URLs "
                "can be fetched through the broker"))
        for hop in range(MAX_REDIRECTS + 1):
            if not grants.allows_host(url):
                how = f" (redirected from a granted URL, hop {hop})" if hop else ""
                suggestion = f"{url.scheme}://{url.raw_host}/*"
                raise self._deny(ext, origin, "fetch", str(url), (
                    f"{_describe(ext, scheme)} tried to fetch {url}{how}: not allowed by "
                    f'host_permissions in manifest.json. Add "{suggestion}" to host_permissions to allow it.'))
            try:
                infos = await self._check_address(url)
            except PermissionDenied as exc:
                raise self._deny(ext, origin, "fetch", str(url),
                                 f"{_describe(ext, scheme)} tried to fetch {url}: {exc}") from None
            self.audit.record(ext.id, origin, "fetch", str(url), True)
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(infos), use_dns_cache=False)
            async with aiohttp.ClientSession(connector=connector) as client, client.request(
                    method, url, headers=[(str(k), str(v)) for k, v in headers], data=body,
                    allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                location = resp.headers.get("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    url = url.join(URL(location))
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    continue
                data = await resp.content.read(MAX_FETCH_BODY + 1)
                if len(data) > MAX_FETCH_BODY:
                    raise PermissionDenied(f"the response of {url} is larger than {MAX_FETCH_BODY} bytes")
                return {"status": resp.status, "url": str(url), "headers": list(resp.headers.items()),
                        "body": base64.b64encode(data).decode()}
        raise PermissionDenied(f"fetch of {url_text} was redirected more than {MAX_REDIRECTS} times")

