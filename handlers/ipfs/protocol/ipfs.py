"""The ipfs:// and ipns:// handler: content-addressed files from the extension's verified block store, IPNS names
from verified records, and blocks and records missing locally from upstream trustless gateways.

Written as any third-party extension would be: the helper modules live in this bundle (ipfs_core/), the block
store and the IPNS records live in the extension's data directory (the "storage" permission), and the network is
reached only through the broker (``runtime.fetch``, limited to the manifest's host_permissions).

Settings: ``<data dir>/settings.json``, written by the host (``protoreg serve --upstream URL``), e.g.
``{"upstreams": ["https://trustless-gateway.link"], "timeout": 20}``. Without upstreams only local data is served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ipfs_core import IpfsError, ipns
from ipfs_core.blocks import BlockStore
from ipfs_core.cids import parse_cid
from ipfs_core.gateway import IMMUTABLE, GatewayResponse, error_page, respond, wants_html
from ipfs_core.network import BlockUnavailable, CarFeed, NetworkBlockStore, Upstreams

from protoreg import FileSlice, Request, Response, runtime

log = logging.getLogger("ipfs-handler")

_store: BlockStore | None = None
_upstreams: Upstreams | None = None
_settings: dict[str, Any] | None = None
_settings_read = 0.0


def store() -> BlockStore:
    global _store
    if _store is None:
        _store = BlockStore(runtime.data_dir() / "blocks")
    return _store


def _slice(cid: Any, start: int, end: int, size: int) -> FileSlice | None:
    """A file leaf held in the local store, by reference: protoreg reads it from the data dir, checks its sha256
    (the CID's digest) and sends it without the bytes passing through this worker."""
    found = store().local_leaf(cid, size)
    if found is None:
        return None
    rel, digest = found
    return FileSlice(f"blocks/{rel}", digest, start, end - start)


def settings() -> dict[str, Any]:
    """The host's settings file, re-read at most every 2 seconds."""
    global _settings, _settings_read, _upstreams
    if _settings is None or time.monotonic() - _settings_read > 2:
        try:
            new = json.loads((runtime.data_dir() / "settings.json").read_text())
        except (OSError, ValueError):
            new = {}
        if new != _settings:
            _upstreams = None
        _settings, _settings_read = new, time.monotonic()
    return _settings


async def _broker_fetch(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    r = await runtime.fetch(url, headers=headers)
    return r.status, dict(r.headers), r.body


async def _broker_stream(url: str, headers: dict[str, str]) -> Any:
    r = await runtime.fetch(url, headers=headers, stream=True)
    return r.status, dict(r.headers), r.iter_chunks(), r.aclose


def _car_path(host: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str | None:
    """The trustless CAR request that carries what a plain request for host/path needs: the path's end as an
    entity (a Range becomes entity-bytes). None for trustless requests themselves (they fetch block by block)."""
    if "format" in query or "application/vnd." in headers.get("accept", ""):
        return None
    extra = ""
    rng = headers.get("range", "")
    if rng.startswith("bytes=") and "," not in rng:
        lo, _, hi = rng[6:].partition("-")
        if lo.isdigit() and (hi.isdigit() or hi == ""):
            extra = f"&entity-bytes={lo}:{hi or '*'}"
        elif not lo and hi.isdigit():
            extra = f"&entity-bytes=-{hi}:*"
    return f"/ipfs/{host}{path or '/'}?format=car&dag-scope=entity{extra}"


def upstreams() -> Upstreams | None:
    global _upstreams
    urls = settings().get("upstreams") or []
    if not urls:
        return None
    if _upstreams is None:
        _upstreams = Upstreams(urls, _broker_fetch, timeout=float(settings().get("timeout", 20)))
    return _upstreams


def _records_dir() -> Path:
    return runtime.data_dir() / "ipns"


def _error(status: int, message: str) -> Response:
    return Response.error(status, message)


async def handleRequest(request: Request) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if request.method not in ("GET", "HEAD"):
        message = f"{request.url.scheme}:// is read-only: use GET or HEAD"
        if wants_html(headers):
            page = error_page(405, message, str(request.url))
            return Response(page.body, status=405, headers=[*page.headers, ("Allow", "GET, HEAD")])
        return Response.error(405, message, headers={"Allow": "GET, HEAD"})
    if request.url.scheme == "ipns":
        return await _serve_ipns(request, headers)
    res = await _respond(request.method, request.url.raw_host or "", request.url.raw_path,
                         dict(request.url.query), headers)
    return _to_response(res)


async def _respond(method: str, host: str, path: str, query: dict[str, str],
                   headers: dict[str, str]) -> GatewayResponse:
    """The gateway answer, from the local store, or (with upstreams, unless only-if-cached) fetching misses."""
    net = upstreams()
    if net is None or "only-if-cached" in headers.get("cache-control", ""):
        return respond(store(), method, host, path, query, headers, _slice)
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()  # the request's context: broker calls are made on its behalf

    def submit(coro: Any) -> concurrent.futures.Future[Any]:
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def done(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                out.cancel()
            elif task.exception() is not None:
                out.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                out.set_result(task.result())

        def start() -> None:
            loop.create_task(coro, context=ctx).add_done_callback(done)

        loop.call_soon_threadsafe(start)
        return out

    fs_store = NetworkBlockStore(store(), net, submit)
    car = _car_path(host, path, query, headers) if method == "GET" else None
    if car is not None and not settings().get("raw_only"):
        try:
            root_local = store().has(parse_cid(host))
        except IpfsError:
            root_local = True
        if not root_local:  # nothing here yet: one CAR for the whole entity, blocks verified as they stream in
            fs_store.feed = CarFeed(store(), net, _broker_stream, car)
    res = await asyncio.to_thread(respond, fs_store, method, host, path, query, headers, _slice)
    if not isinstance(res.body, bytes):
        chunks, sentinel = iter(res.body), object()

        async def stream() -> Any:
            try:
                while True:
                    chunk = await asyncio.to_thread(next, chunks, sentinel)
                    if chunk is sentinel:
                        return
                    yield chunk
            finally:  # the response ended (or the client left): stop the CAR while this request can still close it
                feed = fs_store.feed
                if feed is not None and not feed.task.done():
                    feed.task.cancel()
                    await asyncio.gather(feed.task, return_exceptions=True)

        res.body = stream()  # type: ignore[assignment]
    return res


def _to_response(res: GatewayResponse) -> Response:
    body = res.body
    if not isinstance(body, bytes) and not hasattr(body, "__aiter__"):
        chunks = body

        async def stream() -> Any:
            # A missing or corrupt block mid-file raises here: the stream aborts, it never sends wrong bytes.
            for chunk in chunks:
                yield chunk

        body = stream()
    return Response(body, status=res.status, headers=res.headers)


# -- ipns:// --------------------------------------------------------------------------------------------------------
def _local_record(name: ipns.Name) -> tuple[ipns.Record | None, ipns.RecordRefused | None, float]:
    """(the stored record if it verifies, why it was refused, when it was stored)."""
    path = _records_dir() / f"{name.text}.ipns-record"
    try:
        raw, mtime = path.read_bytes(), path.stat().st_mtime
    except OSError:
        return None, None, 0.0
    try:
        return ipns.verify_record(name, raw), None, mtime
    except ipns.RecordRefused as exc:
        return None, exc, mtime


def _save_record(record: ipns.Record) -> None:
    d = _records_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".tmp-{record.name.text}"
    tmp.write_bytes(record.raw)
    os.replace(tmp, d / f"{record.name.text}.ipns-record")


async def _record(name: ipns.Name, headers: dict[str, str]) -> ipns.Record:
    """The best valid record: stored (imported, published or fetched earlier), refreshed from upstreams once its
    TTL has passed. Raises RecordRefused (the step that failed) or BlockUnavailable (no record anywhere)."""
    local, refused, stored_at = _local_record(name)
    net = upstreams()
    fresh = local is not None and time.time() - stored_at < local.ttl_seconds
    if local is not None and (fresh or net is None or "only-if-cached" in headers.get("cache-control", "")):
        return local
    if net is None or "only-if-cached" in headers.get("cache-control", ""):
        if refused is not None:
            raise refused
        status = 412 if "only-if-cached" in headers.get("cache-control", "") else 404
        err = IpfsError(f"no IPNS record for {name.text} is stored here (import one with protoreg ipns import, "
                        "or configure upstream gateways)")
        err.status = status
        raise err
    got = await net.get(f"/ipns/{name.text}?format=ipns-record", {"Accept": ipns.RECORD_TYPE})
    if got is not None:
        base, _, _, raw = got
        try:
            remote = ipns.verify_record(name, raw)
        except ipns.RecordRefused as exc:
            log.warning("upstream %s sent a refused record for %s: %s", base, name.text, exc)
            if local is None:
                raise
        else:
            if remote.better_than(local):
                _save_record(remote)
                return remote
    if local is not None:
        os.utime(_records_dir() / f"{name.text}.ipns-record")  # checked now: wait another TTL
        return local
    raise BlockUnavailable(f"no IPNS record for {name.text}: not stored here and no upstream gateway had a valid "
                           "one")


def _wants_record(query: dict[str, str], headers: dict[str, str]) -> bool | str:
    fmt = query.get("format")
    if fmt is not None:
        return "ipns-record" if fmt == "ipns-record" else fmt
    return ipns.RECORD_TYPE in headers.get("accept", "")


async def _serve_ipns(request: Request, headers: dict[str, str]) -> Response:
    host = request.url.raw_host or ""
    query = dict(request.url.query)
    try:
        name, canonical = ipns.parse_name(host)
    except ipns.InvalidName as exc:
        return _error(400, str(exc))
    if not canonical:
        qs = f"?{request.url.raw_query_string}" if request.url.raw_query_string else ""
        return Response.redirect(f"ipns://{name.text}{request.url.raw_path}{qs}", status=301)
    wants = _wants_record(query, headers)
    try:
        record = await _record(name, headers)
        if wants == "ipns-record" or wants is True:
            if request.url.raw_path not in ("", "/"):
                return _error(400, "?format=ipns-record names a record: request the name's root path")
            return Response(b"" if request.method == "HEAD" else record.raw, headers={
                "Content-Type": ipns.RECORD_TYPE,
                "Content-Disposition": f'attachment; filename="{name.text}.ipns-record"',
                "Cache-Control": f"public, max-age={record.ttl_seconds}", "X-Content-Type-Options": "nosniff",
                "Vary": "Accept", "X-Ipfs-Path": f"/ipns/{name.text}/"})
        value, depth = record.value, 0
        while True:
            ns, root, sub = ipns.parse_value(value)
            if ns == "ipfs":
                break
            depth += 1
            if depth > ipns.MAX_DEPTH:
                return _error(508, f"/ipns/{name.text} resolves through more than {ipns.MAX_DEPTH} IPNS names")
            inner, _ = ipns.parse_name(root)
            value = (await _record(inner, headers)).value + sub
    except IpfsError as exc:
        return _error(exc.status, str(exc))
    path = (sub.rstrip("/") + request.url.raw_path) if sub else request.url.raw_path
    if not path.startswith("/"):
        path = "/" + path
    ipfs_query = {k: v for k, v in query.items()}
    res = await _respond(request.method, root, path, ipfs_query, headers)
    out = []
    for k, v in res.headers:
        lk = k.lower()
        if lk == "cache-control" and v == IMMUTABLE:
            v = f"public, max-age={record.ttl_seconds}"
        elif lk == "x-ipfs-path":
            v = f"/ipns/{name.text}{request.url.raw_path}"
        elif lk == "location" and res.status == 301 and not v.startswith(("ipfs:", "ipns:")):
            qs = f"?{request.url.raw_query_string}" if request.url.raw_query_string else ""
            v = request.url.raw_path + "/" + qs
        out.append((k, v))
    res.headers = out
    return _to_response(res)


__all__ = ["IpfsError", "handleRequest"]
