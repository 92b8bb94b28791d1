"""ipfs:// and ipns:// as clients of trustless gateways: two protoreg gateways on loopback (the second holds nothing
and fetches every block and record from the first, verifying each), corrupt and absent upstreams, only-if-cached,
and protoreg's gateway as a trustless upstream (the path form answers raw blocks, CARs and records directly)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

import protoreg
from protoreg.gateway import create_app
from protoreg.gateway.hosts import to_gateway_url
from protoreg.worker.config import WorkerConfig
from tests.handlers.ipfs.conftest import car, core, import_record
from tests.handlers.ipfs.helpers import IPFS_BUNDLE, data_dir_for, store_for

DIR = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"
DEMO_CAR = IPFS_BUNDLE / "demo-site.car"
LOOPBACK = ("127.0.0.0/8",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, state: Path) -> None:
        self.reg = protoreg.Registry()
        self.ext = self.reg.install(IPFS_BUNDLE)
        self.state = state
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def import_car(self, path: Path) -> list[str]:
        with path.open("rb") as f:
            report = core.car.import_car(f, store_for(self.ext, self.state))
        return [core.cids.v1_base32(r) for r in report.roots]

    def set_upstreams(self, urls: list[str], timeout: float = 5) -> None:
        d = data_dir_for(self.ext, self.state)
        d.mkdir(parents=True, exist_ok=True)
        (d / "settings.json").write_text(json.dumps({"upstreams": urls, "timeout": timeout}))

    def url(self, custom: str) -> tuple[str, str]:
        """(URL to connect to, Host header) of a custom URL on this gateway."""
        u = to_gateway_url(URL(custom, encoded=True), f"localhost:{self.port}", self.ext.id)
        return f"{self.base}{u.raw_path_qs}", u.raw_authority

    async def get(self, http: aiohttp.ClientSession, custom: str, **headers: str) -> tuple[int, dict, bytes]:
        target, host = self.url(custom)
        async with http.get(target, headers={"Host": host, **headers}, allow_redirects=False) as r:
            return r.status, CIMultiDict(r.headers), await r.read()


@asynccontextmanager
async def running(*gateways: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    for g in gateways:
        app = create_app(g.reg, config=WorkerConfig(state_dir=str(g.state), allow_networks=LOOPBACK))
        g.runner = web.AppRunner(app)
        await g.runner.setup()
        await web.TCPSite(g.runner, "127.0.0.1", g.port).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield http
    finally:
        for g in gateways:
            assert g.runner is not None
            await g.runner.cleanup()


@pytest.fixture
def pair(tmp_path):
    first, second = Gateway(tmp_path / "a"), Gateway(tmp_path / "b")
    second.set_upstreams([first.base])
    return first, second


def demo_files() -> list[str]:
    root = IPFS_BUNDLE / "demo"
    return sorted("/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_second_gateway_serves_the_first_ones_site_byte_for_byte(pair):
    first, second = pair
    (site,) = first.import_car(DEMO_CAR)
    (files,) = first.import_car(car("dir-with-files.car"))
    assert len(store_for(second.ext, second.state)) == 0
    async with running(first, second) as http:
        for path in [*demo_files(), "/"]:
            a = await first.get(http, f"ipfs://{site}{path}")
            b = await second.get(http, f"ipfs://{site}{path}")
            assert a[0] == b[0] == 200, (path, b)
            assert a[2] == b[2], path
            assert a[1]["Content-Type"] == b[1]["Content-Type"] and a[1]["ETag"] == b[1]["ETag"]
        for name in ("multiblock.txt", "hello.txt", ""):
            a = await first.get(http, f"ipfs://{files}/{name}")
            b = await second.get(http, f"ipfs://{files}/{name}")
            assert (a[0], a[2]) == (b[0], b[2]), b[2].decode()[-1500:]
        # the second now holds the blocks it served (verified on the way in and out)
        local = store_for(second.ext, second.state)
        assert len(local) > 0
        for p in local:
            assert p.stat().st_size > 0
        # and serves them without the first
    await asyncio.sleep(0)
    async with running(second) as http:
        status, _, body = await second.get(http, f"ipfs://{files}/multiblock.txt")
        assert status == 200 and len(body) == 1026


async def test_missing_block_is_a_fast_504_naming_the_cid_and_only_if_cached_is_412(pair):
    first, second = pair
    absent = core.cids.v1_base32(core.cids.raw_cid(b"nobody has this"))
    (files,) = first.import_car(car("dir-with-files.car"))
    async with running(first, second) as http:
        t0 = time.monotonic()
        status, _, body = await second.get(http, f"ipfs://{absent}/")
        assert status == 504 and absent.encode() in body
        assert time.monotonic() - t0 < 5
        status, _, body = await second.get(http, f"ipfs://{absent}/")
        assert status == 504 and b"negative cache" in body
        status, _, body = await second.get(http, f"ipfs://{files}/hello.txt", **{"Cache-Control": "only-if-cached"})
        assert status == 412
        assert len(store_for(second.ext, second.state)) == 0  # did not go out


async def test_corrupt_upstream_block_is_dropped_and_the_next_upstream_used(tmp_path):
    good, client = Gateway(tmp_path / "good"), Gateway(tmp_path / "client")
    (files,) = good.import_car(car("dir-with-files.car"))
    hits = []

    async def liar(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.Response(body=b"forged bytes", content_type="application/vnd.ipld.raw")

    app = web.Application()
    app.router.add_get("/{tail:.*}", liar)
    runner = web.AppRunner(app)
    await runner.setup()
    bad_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", bad_port).start()
    client.set_upstreams([f"http://127.0.0.1:{bad_port}", good.base])
    try:
        async with running(good, client) as http:
            status, _, body = await client.get(http, f"ipfs://{files}/hello.txt")
            assert (status, body) == (200, b"hello world\n")
            # a CAR first (nothing is local), which the liar garbles: marked bad, the good one serves the blocks
            assert len(hits) == 1 and hits[0].endswith("?format=car&dag-scope=entity")
            n = len(hits)
            status, _, body = await client.get(http, f"ipfs://{files}/ascii.txt")
            assert status == 200 and len(hits) == n  # marked bad: the good upstream is asked first now
        # only the liar: the block is never stored or served
        lone = Gateway(tmp_path / "lone")
        lone.set_upstreams([f"http://127.0.0.1:{bad_port}"])
        async with running(lone) as http:
            status, _, body = await lone.get(http, f"ipfs://{files}/hello.txt")
            assert status == 504 and b"do not match the CID" in body  # the raw block it forged after the CAR
        assert len(store_for(lone.ext, lone.state)) == 0
    finally:
        await runner.cleanup()


async def test_protoreg_gateway_is_a_trustless_upstream(pair):
    first, _ = pair
    (files,) = first.import_car(car("dir-with-files.car"))
    hello = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    async with running(first) as http:
        async with http.get(f"{first.base}/ipfs/{hello}?format=raw", headers={"Host": f"localhost:{first.port}"},
                            allow_redirects=False) as r:
            assert r.status == 200 and await r.read() == b"hello world\n"
            assert r.headers["Content-Type"] == "application/vnd.ipld.raw"
            # served on the dashboard's host: sandboxed, never a document of that origin
            assert "sandbox; default-src 'none'" in r.headers.getall("Content-Security-Policy")
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{first.base}/ipfs/{files}", headers={"Accept": "application/vnd.ipld.car"},
                            allow_redirects=False) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("application/vnd.ipld.car")
            import io

            reader = core.car.CarReader.open(io.BytesIO(await r.read()))
            assert [core.cids.v1_base32(c) for c in reader.roots] == [files]
            blocks = {core.cids.v1_base32(c): data for c, data, _ in reader.blocks()}
            assert hello in blocks and len(blocks) >= 5
            for cid, data in blocks.items():
                core.cids.verify(core.cids.parse_cid(cid), data)
        async with http.get(f"{first.base}/ipfs/{files}/hello.txt", allow_redirects=False) as r:
            assert r.status == 301  # deserialized responses still go to their own origin


async def test_ipns_records_from_an_upstream(pair, tmp_path):
    from tests.handlers.ipfs.test_ipns import vectors

    first, second = pair
    name, raw = vectors()["v1-v2"]
    import_record(first.ext, first.state, raw, name)
    bad_name, bad_raw = vectors()["v1-v2-broken-signature-v2"]
    async with running(first, second) as http:
        async with http.get(f"{first.base}/ipns/{name}?format=ipns-record") as r:
            assert r.status == 200 and await r.read() == raw
            assert r.headers["Content-Type"] == "application/vnd.ipfs.ipns-record"
            assert r.headers["Cache-Control"] == "public, max-age=1800"
        status, headers, body = await second.get(http, f"ipns://{name}/")
        assert (status, body) == (200, b"v1+v2 record")
        assert headers["Cache-Control"] == "public, max-age=1800"
        stored = data_dir_for(second.ext, second.state) / "ipns" / f"{name}.ipns-record"
        assert stored.read_bytes() == raw
        status, _, body = await second.get(http, f"ipns://{bad_name}/")
        assert status == 504  # the first has no record for it

    async def serve_bad(request: web.Request) -> web.Response:
        return web.Response(body=bad_raw, content_type="application/vnd.ipfs.ipns-record")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve_bad)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    third = Gateway(tmp_path / "c")
    third.set_upstreams([f"http://127.0.0.1:{port}"])
    try:
        async with running(third) as http:
            status, _, body = await third.get(http, f"ipns://{bad_name}/")
            assert status == 502 and b"signature check" in body
    finally:
        await runner.cleanup()


async def test_path_form_converts_legacy_peer_ids_and_keeps_trustless_records_on_the_bare_host(pair):
    from multiformats import multibase

    from tests.handlers.ipfs.test_ipns import vectors

    first, _ = pair
    name, raw = vectors()["v2"]
    import_record(first.ext, first.state, raw, name)
    parsed, _ = core.ipns.parse_name(name)
    peer_id = multibase.encode(parsed.mh, "base58btc")[1:]
    async with running(first) as http:
        async with http.get(f"{first.base}/ipns/{peer_id}/a?b=1", headers={"Host": f"localhost:{first.port}"},
                            allow_redirects=False) as r:
            assert r.status == 301
            assert r.headers["Location"].startswith(f"http://{name}.ipns.") and r.headers["Location"].endswith(
                "/a?b=1")
        async with http.get(f"{first.base}/ipns/{peer_id}", headers={"Accept": "application/vnd.ipfs.ipns-record"},
                            allow_redirects=False) as r:
            assert r.status == 200 and await r.read() == raw


async def test_ranges_through_the_second_gateway_are_exact(pair, tmp_path):
    import io
    import os

    first, second = pair
    data = os.urandom(3 * 1024 * 1024 + 123)
    cid = core.cids.v1_base32(core.importer.add_file(io.BytesIO(data), store_for(first.ext, first.state).put).cid)
    async with running(first, second) as http:
        for rng, want in (("bytes=1000000-1300000", data[1000000:1300001]), ("bytes=-5000", data[-5000:]),
                          ("bytes=3000000-", data[3000000:])):
            status, _, body = await second.get(http, f"ipfs://{cid}/", Range=rng)
            assert status == 206 and body == want, rng
        status, _, body = await second.get(http, f"ipfs://{cid}/")
        assert status == 200 and body == data


def test_serve_upstream_option_writes_the_extensions_settings(tmp_path):
    from protoreg.cli import _set_upstreams

    g = Gateway(tmp_path / "s")
    assert _set_upstreams(g.reg, g.state, ["http://127.0.0.1:9999"]) == ("127.0.0.0/8", "::1/128")
    settings = json.loads((data_dir_for(g.ext, g.state) / "settings.json").read_text())
    assert settings == {"upstreams": ["http://127.0.0.1:9999"]}
    assert _set_upstreams(g.reg, g.state, ["https://trustless-gateway.link"]) == ()
