"""Retrieval from upstream trustless gateways (ipfs specs ``http-gateways/trustless-gateway.md``).

Framework-independent: the caller passes ``fetch(url, headers) -> (status, headers, body)`` (the handler passes the
broker's ``runtime.fetch``). Every block is hash-verified before it is stored or served; a block that does not
match its CID is dropped and its upstream is marked bad for ``BAD_FOR`` seconds. Fetches run in parallel with a
bound, each with a timeout, falling back to the next upstream; a CID no upstream had is remembered for
``NEGATIVE_FOR`` seconds (a short negative cache), and answers ``BlockUnavailable`` (a 504 naming the CID).

The UnixFS and gateway code is synchronous; :class:`NetworkBlockStore` runs it in a thread and turns a local miss
into a fetch on the event loop (``submit``), so a file read is served as its blocks arrive. When a file node
arrives, its children are prefetched in parallel (at most ``PREFETCH`` at a time per store).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from multiformats import CID

from ipfs_core import BlockNotFound, CorruptBlock, IpfsError
from ipfs_core.blocks import BlockStore
from ipfs_core.car import _split_cid as split_cid
from ipfs_core.cids import MAX_BLOCK, _hash_info, decode_link, digest_matches, is_identity, v1_base32
from ipfs_core.dagpb import decode_node, decode_unixfs

log = logging.getLogger(__name__)

TIMEOUT = 20.0
BAD_FOR = 60.0
NEGATIVE_FOR = 10.0
PARALLEL = 16
PREFETCH = 64
RAW = "application/vnd.ipld.raw"
MAX_SECTION = MAX_BLOCK + 128  # a block and its CID

Fetch = Callable[[str, dict[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]


class BlockUnavailable(IpfsError):
    status = 504


class Upstreams:
    """A list of trustless gateways (``https://host[:port]``), with bad-upstream marks and a negative cache."""

    def __init__(self, urls: Sequence[str], fetch: Fetch, *, timeout: float = TIMEOUT,
                 parallel: int = PARALLEL) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.fetch = fetch
        self.timeout = timeout
        self.bad: dict[str, float] = {}
        self.negative: dict[bytes, float] = {}
        self.inflight: dict[bytes, asyncio.Future[bytes]] = {}
        self._sem = asyncio.Semaphore(parallel)
        self.stats = {"fetched": 0, "bytes": 0, "corrupt": 0, "failed": 0}

    def order(self) -> list[str]:
        now = time.monotonic()
        return sorted(self.urls, key=lambda u: self.bad.get(u, 0) > now)  # good ones first, stable

    async def get(self, url_path: str, headers: dict[str, str]) -> tuple[str, int, dict[str, str], bytes] | None:
        """The first upstream's 200 answer to ``url_path``; None when none answered 200."""
        errors = []
        for base in self.order():
            try:
                async with self._sem:
                    status, h, body = await asyncio.wait_for(self.fetch(base + url_path, headers), self.timeout)
            except (TimeoutError, OSError, RuntimeError, IpfsError) as exc:
                errors.append(f"{base}: {type(exc).__name__} {exc}")
                self.bad[base] = time.monotonic() + BAD_FOR / 6
                continue
            except Exception as exc:  # PermissionDenied from the broker and the like
                errors.append(f"{base}: {type(exc).__name__} {exc}")
                continue
            if status == 200:
                return base, status, h, body
            errors.append(f"{base}: HTTP {status}")
        if errors:
            log.info("no upstream answered %s: %s", url_path, "; ".join(errors))
        return None

    async def block(self, cid: CID) -> bytes:
        """The block's verified bytes from the first upstream that has a matching copy."""
        key = bytes(cid.digest)
        running = self.inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        if self.negative.get(key, 0) > time.monotonic():
            raise BlockUnavailable(f"block {v1_base32(cid)} is not in the local store and no upstream had it a "
                                   "moment ago (negative cache)")
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            data = await self._block(cid)
            fut.set_result(data)
            return data
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters get it through shield
            raise
        finally:
            del self.inflight[key]

    async def _block(self, cid: CID) -> bytes:
        text = v1_base32(cid)
        tried = []
        for base in self.order():
            try:
                async with self._sem:
                    status, _, body = await asyncio.wait_for(
                        self.fetch(f"{base}/ipfs/{text}?format=raw", {"Accept": RAW}), self.timeout)
            except Exception as exc:
                tried.append(f"{base} ({type(exc).__name__}: {exc})")
                if isinstance(exc, (asyncio.TimeoutError, OSError)):
                    self.bad[base] = time.monotonic() + BAD_FOR / 6
                continue
            if status != 200:
                tried.append(f"{base} (HTTP {status})")
                continue
            if not digest_matches(cid, body):
                self.stats["corrupt"] += 1
                self.bad[base] = time.monotonic() + BAD_FOR
                log.warning("upstream %s sent a block that does not match %s: dropped, upstream marked bad", base,
                            text)
                tried.append(f"{base} (sent bytes that do not match the CID: dropped)")
                continue
            self.stats["fetched"] += 1
            self.stats["bytes"] += len(body)
            return body
        self.stats["failed"] += 1
        self.negative[bytes(cid.digest)] = time.monotonic() + NEGATIVE_FOR
        where = "; ".join(tried) or "no upstream gateways are configured"
        raise BlockUnavailable(f"block {text} is not in the local store and could not be retrieved: {where}")


StreamFetch = Callable[[str, dict[str, str]],
                       Awaitable[tuple[int, dict[str, str], AsyncIterator[bytes], Callable[[], Awaitable[None]]]]]
CAR = "application/vnd.ipld.car; version=1; order=dfs; dups=n"


def _varint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(buf):
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CorruptBlock("a CAR section length is not a valid varint")
    return None


async def car_sections(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[CID, bytes]]:
    """(CID, bytes) of each block of a CARv1 arriving in chunks; the header is skipped (blocks are checked against
    their own CIDs by the caller, so the header's roots need no trust)."""
    buf = bytearray()
    header = True
    async for chunk in chunks:
        buf += chunk
        pos = 0
        while True:
            got = _varint(buf, pos)
            if got is None:
                break
            n, start = got
            if n > MAX_SECTION:
                raise CorruptBlock(f"a CAR section of {n} bytes is over the {MAX_SECTION}-byte limit")
            if start + n > len(buf):
                break
            section = bytes(buf[start:start + n])
            pos = start + n
            if header:
                header = False
                continue
            yield split_cid(section)
        del buf[:pos]
    if buf:
        raise CorruptBlock("the CAR stream ended inside a section")


_WRITER = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="car-feed-store")


class CarFeed:
    """One streamed CAR (``dag-scope=entity``) from the first upstream that answers. Each block is hash-verified as
    it arrives, handed to the reader waiting for it (the CAR's depth-first order is the read order), and written to
    the store in a writer thread while the stream goes on (at most ``WRITES`` blocks in memory)."""

    WRITES = 16

    def __init__(self, store: BlockStore, upstreams: Upstreams, stream_fetch: StreamFetch, url_path: str) -> None:
        self.store = store
        self.upstreams = upstreams
        self.stream_fetch = stream_fetch
        self.url_path = url_path
        self.done = False
        self.pending: dict[bytes, bytes] = {}  # verified, being written
        self.waiters: dict[bytes, list[asyncio.Future[bytes | None]]] = {}
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def wait_for(self, cid: CID) -> bytes | None:
        """The verified block once it arrives; None if the CAR ended (or stalled past the timeout) without it."""
        key = _hash_info(cid)[2]
        if key in self.pending:
            return self.pending[key]
        if BlockStore.has(self.store, cid):
            return BlockStore.get(self.store, cid)
        if self.done:
            return None
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(key, []).append(fut)
        try:
            return await asyncio.wait_for(fut, self.upstreams.timeout)
        except TimeoutError:
            return None

    def _notify(self, key: bytes, data: bytes | None) -> None:
        for fut in self.waiters.pop(key, []):
            if not fut.done():
                fut.set_result(data)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        writes: set[asyncio.Future[Any]] = set()
        try:
            for base in self.upstreams.order():
                try:
                    status, _, chunks, close = await asyncio.wait_for(
                        self.stream_fetch(base + self.url_path, {"Accept": CAR}), self.upstreams.timeout)
                except Exception as exc:
                    log.info("CAR from %s failed: %s", base, exc)
                    continue
                try:
                    if status != 200:
                        continue
                    async for cid, data in car_sections(chunks):
                        if len(data) > MAX_BLOCK or not digest_matches(cid, data):
                            self.upstreams.stats["corrupt"] += 1
                            self.upstreams.bad[base] = time.monotonic() + BAD_FOR
                            log.warning("upstream %s sent a CAR block that does not match %s: dropped, CAR "
                                        "abandoned, upstream marked bad", base, v1_base32(cid))
                            return
                        key = _hash_info(cid)[2]
                        self.pending[key] = data
                        self._notify(key, data)
                        self.upstreams.stats["fetched"] += 1
                        self.upstreams.stats["bytes"] += len(data)
                        fut = loop.run_in_executor(_WRITER, self._write, cid, data)
                        fut.add_done_callback(lambda _f, k=key: self.pending.pop(k, None))
                        writes.add(fut)
                        fut.add_done_callback(writes.discard)
                        if len(writes) >= self.WRITES:
                            await asyncio.wait(set(writes), return_when=asyncio.FIRST_COMPLETED)
                    return
                except CorruptBlock as exc:
                    self.upstreams.bad[base] = time.monotonic() + BAD_FOR
                    log.warning("upstream %s sent a malformed CAR (%s): abandoned, upstream marked bad", base, exc)
                    return
                except Exception as exc:
                    log.info("CAR from %s ended early: %s", base, exc)
                    return
                finally:
                    await close()
        finally:
            self.done = True
            for key in list(self.waiters):
                self._notify(key, None)
            if writes:
                await asyncio.wait(set(writes))

    def _write(self, cid: CID, data: bytes) -> None:
        try:
            self.store.put(cid, data, verified=True)  # just verified by _run; get() verifies again on reads
        except Exception as exc:
            log.warning("could not store block %s: %s", v1_base32(cid), exc)


class NetworkBlockStore(BlockStore):
    """The local store, falling back to upstreams. ``get`` is called from a worker thread (the sync gateway code);
    ``submit`` runs coroutines on the event loop in the request's context."""

    def __init__(self, local: BlockStore, upstreams: Upstreams,
                 submit: Callable[[Coroutine[Any, Any, Any]], concurrent.futures.Future[Any]]) -> None:
        super().__init__(local.root)
        self.upstreams = upstreams
        self.submit = submit
        self.feed: CarFeed | None = None
        self._prefetching: set[bytes] = set()

    def get(self, cid: CID) -> bytes:
        try:
            return super().get(cid)
        except BlockNotFound:
            pass
        return self.submit(self.obtain(cid)).result(self.upstreams.timeout * (len(self.upstreams.urls) + 2))

    async def obtain(self, cid: CID) -> bytes:
        if self.feed is not None:
            data = await self.feed.wait_for(cid)
            if data is not None:
                return data
        return await self.fetch(cid)

    async def fetch(self, cid: CID) -> bytes:
        data = await self.upstreams.block(cid)
        try:
            self.put(cid, data)  # verified again
        except CorruptBlock:  # pragma: no cover - block() verified it
            raise
        except OSError as exc:
            log.warning("could not store block %s: %s", v1_base32(cid), exc)
        if self.feed is None or self.feed.done:
            self._prefetch_children(cid, data)
        return data

    def _prefetch_children(self, cid: CID, data: bytes) -> None:
        if cid.codec.name != "dag-pb":
            return
        try:
            node = decode_node(data)
            if node.data is None or decode_unixfs(node.data).type not in (2, 0):  # File, Raw
                return
            children = [decode_link(link.hash) for link in node.links]
        except Exception:
            return
        todo = [c for c in children if not is_identity(c) and not BlockStore.has(self, c)
                and bytes(c.digest) not in self._prefetching]
        if not todo:
            return
        for c in todo:
            self._prefetching.add(bytes(c.digest))
        asyncio.get_running_loop().create_task(self._prefetch(todo))

    async def _prefetch(self, cids: list[CID]) -> None:
        sem = asyncio.Semaphore(PREFETCH)

        async def one(c: CID) -> None:
            async with sem:
                try:
                    if not BlockStore.has(self, c):
                        await self.fetch(c)
                except Exception as exc:  # a prefetch is a hint: the reader fetches (and reports) it again
                    log.debug("prefetch of %s failed: %s", v1_base32(c), exc)
                finally:
                    self._prefetching.discard(bytes(c.digest))

        await asyncio.gather(*(one(c) for c in cids))
