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
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from protoreg._fs import remove_tree
from protoreg._text import clip
from protoreg.audit import AuditLog
from protoreg.errors import PermissionDenied
from protoreg.policy.matchpatterns import MatchPattern, parse_pattern
from protoreg.storage import MAX_KEY, StorageStore

if TYPE_CHECKING:
    from protoreg.permissions import PermissionManager
    from protoreg.registry import Extension

__all__ = ["Broker", "Grants"]

log = logging.getLogger("protoreg.broker")

MAX_FETCH_BODY = 16 * 1024 * 1024
#: A streamed body is pulled in pieces of at most this size; a stream unread this long is closed.
STREAM_CHUNK = 1024 * 1024
STREAM_PIECE = 256 * 1024
STREAM_AHEAD = 8
STREAM_IDLE = 60.0
MAX_STORED_VALUE = 128 * 1024
MAX_REDIRECTS = 10
#: Defaults of the per-extension limits (WorkerConfig.max_concurrent_fetches and storage_quota override them).
MAX_CONCURRENT_FETCHES = 16
STORAGE_QUOTA = 64 * 1024 * 1024
#: Request headers Fetch removes when a redirect leaves the origin that was granted the credentials.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
#: IPv6 prefixes that carry an IPv4 address, which then decides (NAT64 and 6to4 reach IPv4 hosts).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_6TO4 = ipaddress.IPv6Network("2002::/16")


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``ip`` is globally routable unicast: not private, loopback, link-local, shared (100.64.0.0/10),
    site-local (fec0::/10), multicast, reserved or unspecified, including IPv4 addresses inside IPv4-mapped,
    NAT64 and 6to4 IPv6 addresses."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if any(ip in net for net in _NAT64):
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _6TO4:
            return is_public_address(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Grants:
    """What an extension may do: its effective grants (see protoreg.profile), else what its manifest requests."""

    permissions: frozenset[str]
    hosts: tuple[MatchPattern, ...]

    @classmethod
    def from_extension(cls, ext: Extension) -> Grants:
        """The extension's effective grants (``requested ∩ ceiling``, set by the profile at install); for a
        directory installed without a profile, what its manifest requests."""
        manifest = ext.manifest
        if ext.granted_permissions is not None or ext.granted_hosts is not None:
            perms, hosts = frozenset(ext.granted_permissions or ()), tuple(ext.granted_hosts or ())
            if getattr(manifest, "sandboxes", None):  # the effective grants cover the sandboxes' requests too:
                perms = perms & set(manifest.permissions)  # the extension's own handlers get only their own
                hosts = tuple(p for p in hosts if p in manifest.granted_hosts)
            return cls(perms, tuple(parse_pattern(p) for p in hosts))
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


def _dir_name(ext_id: str) -> str:
    # "ext-" keeps any id (even "..", which the manifest rules refuse anyway) a plain child of data_root. A named
    # sandbox ("ext@x#net", protoreg/sandboxes.py) gets "sbx-ext@x#net" as "sbx-ext@x_net": never an extension's.
    prefix = "ext-"
    if "#" in ext_id:
        prefix, ext_id = "sbx-", ext_id.replace("#", "/", 1)
    return prefix + "".join(c if c.isalnum() or c in "-_.@" else "_" for c in ext_id)


class Broker:
    def __init__(self, *, audit: AuditLog | None = None, storage: StorageStore | None = None,
                 data_root: Path | None = None, allow_private_networks: bool = False,
                 allow_networks: tuple[str, ...] = (), max_concurrent_fetches: int = MAX_CONCURRENT_FETCHES,
                 storage_quota: int = STORAGE_QUOTA, permissions: PermissionManager | None = None) -> None:
        self.audit = audit if audit is not None else AuditLog()  # an empty log is falsy (len 0)
        #: The user's decisions (protoreg.permissions), consulted on every call after the effective grants.
        self.permissions = permissions
        self.storage = storage or StorageStore()
        self.data_root = data_root
        self.allow_private_networks = allow_private_networks
        #: Non-public networks the host grants (CIDRs), e.g. a company's 10.0.0.0/8.
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.max_concurrent_fetches = max_concurrent_fetches
        self.storage_quota = storage_quota
        self._fetching: dict[str, int] = {}
        #: Open streamed fetch bodies: id -> (extension id, client, response, last use). Each holds a fetch slot.
        self._streams: dict[int, list[Any]] = {}
        self._next_stream = 1

    # -- grants -----------------------------------------------------------------------------------------------
    def grants(self, ext: Extension) -> Grants:
        return Grants.from_extension(ext)

    def data_dir(self, ext: Extension) -> Path | None:
        """The extension's read-write directory (created on demand) when it has the "storage" permission and the
        user's decision for it is allow (asked when a worker starts: a prompt can't be answered there, so "prompt"
        gives no directory; a worker keeps the directory it started with until it is replaced)."""
        if self.data_root is None or "storage" not in self.grants(ext).permissions:
            return None
        if self.permissions is not None and self.permissions.decision(ext, "storage").state != "allow":
            return None
        path = self.data_root / _dir_name(ext.id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def forget(self, ext: Extension) -> None:
        """Uninstall: remove the extension's storage partitions and data directory.

        The directory is first renamed aside (atomic), so a reinstall never sees the old data even if removing a
        pathological tree (very deep, huge) fails part-way; the removal itself is iterative (no recursion limit).
        """
        removed = self.storage.delete_extension(ext.id)
        if self.data_root is not None:
            path = self.data_root / _dir_name(ext.id)
            if path.exists():
                try:
                    remove_tree(path)
                except OSError as exc:
                    log.error("could not remove all of %s's data directory (%s); what remains was moved aside "
                              "and is never given to an extension", ext.id, exc)
        log.info("removed %d stored values and the data directory of %s", removed, ext.id)

    # -- calls ------------------------------------------------------------------------------------------------
    async def call(self, ext: Extension, origin: str, scheme: str | None, cap: str, args: dict[str, Any]) -> Any:
        """Run one capability call for ``ext`` serving a request of ``origin``; raise PermissionDenied."""
        if cap == "fetch":
            return await self._fetch(ext, origin, scheme, args)
        if cap in ("fetch.read", "fetch.close"):
            return await self._stream_call(ext, origin, cap, args)
        if cap.startswith("storage."):
            how = ""
            if "storage" in self.grants(ext).permissions:  # not granted: _storage says why (ceiling, manifest)
                how = await self._decided(ext, origin, "storage", cap, str(args.get("key", ""))[:MAX_KEY])
            return self._storage(ext, origin, scheme, cap.removeprefix("storage."), args, how)
        raise ValueError(f"unknown capability {cap!r}")

    async def _decided(self, ext: Extension, origin: str, permission: str, cap: str, target: str) -> str:
        """The user's decision for a granted permission (may prompt); how it was allowed, else PermissionDenied."""
        if self.permissions is None:
            return ""
        try:
            return await self.permissions.check(ext, permission, capability=cap, target=target, origin=origin)
        except PermissionDenied as exc:
            raise self._deny(ext, origin, cap, target, str(exc), permission=permission) from None

    async def _decided_host(self, ext: Extension, origin: str, grants: Grants, url: URL) -> tuple[str, str]:
        """Of the granted host patterns that cover ``url``, the one whose decision allows it (else prompts, else
        the first): (how it was allowed, the pattern)."""
        matching = [p.text for p in grants.hosts if p.matches(url)]
        if self.permissions is None:
            return "", matching[0]
        states = {p: self.permissions.decision(ext, p).state for p in matching}
        chosen = next((p for p in matching if states[p] == "allow"), None) or next(
            (p for p in matching if states[p] == "prompt"), matching[0])
        return await self._decided(ext, origin, chosen, "fetch", str(url)), chosen

    def _deny(self, ext: Extension, origin: str, cap: str, target: str, message: str, *,
              permission: str = "") -> PermissionDenied:
        self.audit.record(ext.id, origin, cap, target, False, message, permission=permission)
        log.warning("%s", clip(message, 4096))
        return PermissionDenied(message)

    def _storage(self, ext: Extension, origin: str, scheme: str | None, op: str, args: dict[str, Any],
                 how: str = "") -> Any:
        key = args.get("key", "")
        if not isinstance(key, str) or len(key) > MAX_KEY:
            raise ValueError("storage key must be a str of at most 1024 characters")
        if "storage" not in self.grants(ext).permissions:
            if "storage" in ext.manifest.permissions:  # requested, but not within a signing store's ceiling
                raise self._deny(ext, origin, f"storage.{op}", key, (
                    f"PermissionDenied: {_describe(ext, scheme)} tried to use storage.{op}: the manifest requests "
                    f'"storage" but it was not granted (clipped by the ceiling of the store that signed it; see '
                    f"protoreg grants {ext.id})."), permission="storage")
            raise self._deny(ext, origin, f"storage.{op}", key, (
                f"{_describe(ext, scheme)} tried to use storage.{op}: the extension lacks the "
                f'"storage" permission in manifest.json. Add "storage" to "permissions" to allow it.'))
        self.audit.record(ext.id, origin, f"storage.{op}", key, True, how, permission="storage")
        if op == "get":
            value = self.storage.get(ext.id, origin, key)
            return None if value is None else base64.b64encode(value).decode()
        if op == "set":
            raw = base64.b64decode(args.get("value", ""), validate=True)
            if len(raw) > MAX_STORED_VALUE:
                raise PermissionDenied(f"storage.set of {len(raw)} bytes exceeds the {MAX_STORED_VALUE}-byte limit "
                                       "per value; split the value")
            used = self.storage.usage(ext.id) - self.storage.size(ext.id, origin, key)
            if used + len(key.encode()) + len(raw) > self.storage_quota:
                raise self._deny(ext, origin, "storage.set", key, (
                    f"{_describe(ext, scheme)} tried to store {len(raw)} bytes under {key!r}: the extension "
                    f"already stores {used} bytes, and its storage quota is {self.storage_quota} bytes "
                    "(WorkerConfig.storage_quota). Delete values it no longer needs, or ask the host for a larger "
                    "quota"))
            self.storage.set(ext.id, origin, key, raw)
            return None
        if op == "delete":
            return self.storage.delete(ext.id, origin, key)
        if op == "keys":
            return self.storage.keys(ext.id, origin)
        raise ValueError(f"unknown storage operation {op!r}")

    # -- streamed fetch bodies (pulled by the worker: bounded memory, the reader sets the pace) --------------------
    def _open_stream(self, ext: Extension, origin: str, client: aiohttp.ClientSession,
                     resp: aiohttp.ClientResponse) -> int:
        self._sweep_streams()
        sid = self._next_stream
        self._next_stream += 1
        # Read-ahead of at most STREAM_AHEAD pieces, so the upstream keeps flowing while the worker handles a piece
        # (bounded: the queue is full -> the pump waits -> aiohttp stops reading the socket -> TCP backpressure).
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(STREAM_AHEAD)

        async def pump() -> None:
            try:
                async for piece in resp.content.iter_chunked(STREAM_PIECE):
                    await queue.put(piece)
                await queue.put(None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handed to the reader
                await queue.put(exc)

        task = asyncio.get_running_loop().create_task(pump())
        self._streams[sid] = [(ext.id, origin), client, resp, time.monotonic(), queue, task, b""]
        self._fetching[ext.id] = self._fetching.get(ext.id, 0) + 1
        return sid

    async def _close_stream(self, sid: int) -> None:
        entry = self._streams.pop(sid, None)
        if entry is None:
            return
        (ext_id, _origin), client, resp, _, _, task, _ = entry
        task.cancel()
        resp.release()
        await client.close()
        left = self._fetching.get(ext_id, 1) - 1
        if left > 0:
            self._fetching[ext_id] = left
        else:
            self._fetching.pop(ext_id, None)

    def _sweep_streams(self) -> None:
        """Close streams their worker stopped reading (it crashed or forgot aclose())."""
        now = time.monotonic()
        for sid, entry in list(self._streams.items()):
            if now - entry[3] > STREAM_IDLE:
                asyncio.get_running_loop().create_task(self._close_stream(sid))

    async def _stream_call(self, ext: Extension, origin: str, cap: str, args: dict[str, Any]) -> Any:
        sid = args.get("stream")
        entry = self._streams.get(sid) if isinstance(sid, int) else None
        if entry is None or entry[0] != (ext.id, origin):  # another extension's or origin's stream is refused
            raise ValueError(f"{cap}: no open fetch stream {sid!r} of this extension")
        if cap == "fetch.close":
            await self._close_stream(sid)  # type: ignore[arg-type]
            return None
        want = max(1, min(int(args.get("max", STREAM_CHUNK)), STREAM_CHUNK))
        queue: asyncio.Queue[bytes | BaseException | None] = entry[4]
        parts: list[bytes] = []
        size, eof = 0, False
        while size < want:
            if entry[6]:  # what the last read left over
                item, entry[6] = entry[6], b""
            elif parts and queue.empty():
                break  # send what is here; don't wait for more
            else:
                item = await queue.get()
            if item is None:
                eof = True
                break
            if isinstance(item, BaseException):
                await self._close_stream(sid)  # type: ignore[arg-type]
                raise item
            if size + len(item) > want:
                item, entry[6] = item[:want - size], item[want - size:]
            parts.append(item)
            size += len(item)
        entry[3] = time.monotonic()
        if eof:
            await self._close_stream(sid)  # type: ignore[arg-type]
        return {"data": b"".join(parts), "eof": eof}  # bytes: sent as a binary RESULT (see worker/process.py)

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
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            granted = self.allow_private_networks or any(ip in net for net in self.allow_networks
                                                         if net.version == ip.version)
            if not granted and not is_public_address(ip):
                kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local else
                        "multicast" if ip.is_multicast else "private or otherwise not globally routable")
                raise PermissionDenied(
                    f"{host} resolves to {ip}, a {kind} address: refused to prevent server-side request forgery. "
                    f"Grant that network with WorkerConfig(allow_networks=[\"{ip}/32\"]) (or "
                    "allow_private_networks=True for every one; protoreg serve/fetch: --allow-private-networks) "
                    "in the host to allow it")
            results.append({"hostname": host, "host": str(ip), "port": port, "family": family, "proto": proto,
                            "flags": socket.AI_NUMERICHOST})
        return results

    async def _fetch(self, ext: Extension, origin: str, scheme: str | None, args: dict[str, Any]) -> Any:
        self._sweep_streams()
        running = self._fetching.get(ext.id, 0)
        if running >= self.max_concurrent_fetches:
            raise self._deny(ext, origin, "fetch", str(args.get("url")), (
                f"{_describe(ext, scheme)} tried to start a fetch while {running} of its fetches are running: the "
                f"limit is {self.max_concurrent_fetches} concurrent fetches per extension "
                "(WorkerConfig.max_concurrent_fetches). Wait for a fetch to finish before starting another"))
        self._fetching[ext.id] = running + 1
        try:
            return await self._fetch_hops(ext, origin, scheme, args)
        finally:
            left = self._fetching[ext.id] - 1
            if left:
                self._fetching[ext.id] = left
            else:
                del self._fetching[ext.id]

    async def _fetch_hops(self, ext: Extension, origin: str, scheme: str | None, args: dict[str, Any]) -> Any:
        url_text = args.get("url")
        method = str(args.get("method", "GET")).upper()
        headers = args.get("headers") or []
        if not isinstance(url_text, str) or not isinstance(headers, list):
            raise ValueError("fetch needs a url string and a list of headers")
        body = base64.b64decode(args["body"], validate=True) if args.get("body") else None
        stream = bool(args.get("stream"))
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
                requested = [parse_pattern(p) for p in ext.manifest.granted_hosts]
                if ext.granted_hosts is not None and any(p.matches(url) for p in requested):
                    raise self._deny(ext, origin, "fetch", str(url), (
                        f"PermissionDenied: {_describe(ext, scheme)} tried to fetch {url}{how}: the manifest's "
                        "host_permissions request it but it was not granted (clipped by the ceiling of the store "
                        f"that signed it; see protoreg grants {ext.id})."))
                raise self._deny(ext, origin, "fetch", str(url), (
                    f"{_describe(ext, scheme)} tried to fetch {url}{how}: not allowed by "
                    f'host_permissions in manifest.json. Add "{suggestion}" to host_permissions to allow it.'))
            how, pattern = await self._decided_host(ext, origin, grants, url)
            try:
                infos = await self._check_address(url)
            except PermissionDenied as exc:
                raise self._deny(ext, origin, "fetch", str(url),
                                 f"{_describe(ext, scheme)} tried to fetch {url}: {exc}") from None
            self.audit.record(ext.id, origin, "fetch", str(url), True, how, permission=pattern)
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(infos), use_dns_cache=False)
            client = aiohttp.ClientSession(connector=connector)
            keep = False
            try:
                resp = await client.request(method, url, headers=[(str(k), str(v)) for k, v in headers], data=body,
                                            allow_redirects=False, timeout=aiohttp.ClientTimeout(
                                                total=None if stream else 30, sock_connect=30, sock_read=30))
                location = resp.headers.get("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    resp.release()
                    nxt = url.join(URL(location))
                    if (nxt.scheme, nxt.host, nxt.port) != (url.scheme, url.host, url.port):
                        headers = [h for h in headers if str(h[0]).lower() not in _CREDENTIAL_HEADERS]
                    url = nxt
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                    continue
                head = {"status": resp.status, "url": str(url), "headers": list(resp.headers.items())}
                if stream:
                    keep = True
                    return {**head, "stream": self._open_stream(ext, origin, client, resp)}
                # StreamReader.read(n) returns what has arrived (at most n), not n bytes: read to EOF.
                parts, size = [], 0
                async for chunk in resp.content.iter_any():
                    parts.append(chunk)
                    size += len(chunk)
                    if size > MAX_FETCH_BODY:
                        break
                data = b"".join(parts)
                if len(data) > MAX_FETCH_BODY:
                    raise PermissionDenied(f"the response of {url} is larger than {MAX_FETCH_BODY} bytes; use "
                                           "runtime.fetch(..., stream=True) for large bodies")
                return {**head, "body": base64.b64encode(data).decode()}
            finally:
                if not keep:
                    await client.close()
        raise PermissionDenied(f"fetch of {url_text} was redirected more than {MAX_REDIRECTS} times")

