"""ipfs:// through Session.fetch and through the gateway, with real sandboxed workers, over the
gateway-conformance CAR fixtures."""

from __future__ import annotations

import io

import pytest

from protoreg.gateway import create_app
from tests.handlers.ipfs.conftest import car, core

DIR = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"
HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


@pytest.fixture
async def loaded(ipfs, session):
    _, _, import_car = ipfs
    for name in ("dir-with-files.car", "dir_listing.car", "gateway_cache.car", "symlink.car",
                 "subdomain_gateway.car", "single-layer-hamt-with-multi-block-files.car",
                 "dir-with-percent-encoded-filename.car", "gateway-raw-block.car"):
        import_car(car(name))
    return session


async def test_files_with_etag_immutable_cache_and_ipfs_headers(loaded):
    resp = await loaded.fetch(f"ipfs://{DIR}/hello.txt")
    assert (resp.status, await resp.read()) == (200, b"hello world\n")
    assert resp.headers["ETag"] == f'"{HELLO}"'
    assert resp.headers["Cache-Control"] == "public, max-age=29030400, immutable"
    assert resp.headers["X-Ipfs-Path"] == f"/ipfs/{DIR}/hello.txt"
    assert resp.headers["X-Ipfs-Roots"] == f"{DIR},{HELLO}"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.secure_context and resp.origin.serialize() == f"ipfs://{DIR}"


async def test_multiblock_file_and_ranges(loaded):
    whole = await (await loaded.fetch(f"ipfs://{DIR}/multiblock.txt")).read()
    assert len(whole) == 1026
    part = await loaded.fetch(f"ipfs://{DIR}/ascii.txt", headers={"Range": "bytes=6-16"})
    assert (part.status, part.headers["Content-Range"], await part.read()) == (206, "bytes 6-16/31", b"application")
    tail = await loaded.fetch(f"ipfs://{DIR}/ascii.txt", headers={"Range": "bytes=-3"})
    assert tail.status == 206 and tail.headers["Content-Range"] == "bytes 28-30/31"
    across = await loaded.fetch(f"ipfs://{DIR}/multiblock.txt", headers={"Range": "bytes=250-520"})
    assert await across.read() == whole[250:521]
    bad = await loaded.fetch(f"ipfs://{DIR}/ascii.txt", headers={"Range": "bytes=100-200"})
    assert bad.status == 416 and bad.headers["Content-Range"] == "bytes */31"
    ascii_whole = await (await loaded.fetch(f"ipfs://{DIR}/ascii.txt")).read()
    multi = await loaded.fetch(f"ipfs://{DIR}/ascii.txt", headers={"Range": "bytes=0-1,5-6"})
    assert multi.status == 206 and await multi.read() == ascii_whole[0:2]  # the first range only (documented)


async def test_etag_revalidation_gives_304(loaded):
    root = "bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui"
    first = await loaded.fetch(f"ipfs://{root}/root2/root3/root4/")
    assert first.status == 200 and first.headers["Content-Type"].startswith("text/html")  # its index.html
    assert first.headers["X-Ipfs-Roots"].count(",") == 3 and await first.read()  # root, root2, root3, root4
    again = await loaded.fetch(f"ipfs://{root}/root2/root3/root4/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304


async def test_directory_without_slash_redirects_and_listing_shows_utf8_names(loaded):
    root = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"
    resp = await loaded.fetch(f"ipfs://{root}/%C4%85/%C4%99", redirect="manual")
    assert resp.status == 301 and resp.headers["Location"].endswith("/")
    listing = await loaded.fetch(f"ipfs://{root}/%C4%85/%C4%99/")
    text = await listing.text()
    assert "file-źł.txt" in text and "bafk" in text
    assert "default-src 'none'" in ",".join(listing.headers.getall("Content-Security-Policy"))
    file = await loaded.fetch(f"ipfs://{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt")
    assert file.status == 200


async def test_symlink_answers_with_its_target(loaded):
    root = core.cids.v1_base32(core.cids.parse_cid("QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"))
    assert await (await loaded.fetch(f"ipfs://{root}/foo")).read() == b"content\n"
    assert await (await loaded.fetch(f"ipfs://{root}/bar")).read() == b"foo"


async def test_hamt_entries_resolve_through_the_handler(loaded):
    root = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
    for name in ("1.txt", "500.txt", "999.txt"):
        assert (await loaded.fetch(f"ipfs://{root}/{name}")).status == 200
    assert (await loaded.fetch(f"ipfs://{root}/1001.txt")).status == 404


async def test_percent_encoded_names(loaded):
    root = "bafybeig675grnxcmshiuzdaz2xalm6ef4thxxds6o6ypakpghm5kghpc34"
    listing = await (await loaded.fetch(f"ipfs://{root}/")).text()
    import re

    hrefs = [h for h in re.findall(r'href="([^"]+)"', listing) if h != ".." and not h.startswith("data:")]
    assert hrefs
    for href in hrefs:
        assert (await loaded.fetch(f"ipfs://{root}{href}")).status == 200, href


async def test_raw_and_car_formats_with_format_beating_accept(loaded):
    raw = await loaded.fetch(f"ipfs://{DIR}/hello.txt?format=raw", headers={"Accept": "application/vnd.ipld.car"})
    assert raw.headers["Content-Type"] == "application/vnd.ipld.raw" and await raw.read() == b"hello world\n"
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    car_resp = await loaded.fetch(f"ipfs://{DIR}/", headers={"Accept": "application/vnd.ipld.car"})
    assert car_resp.headers["Content-Type"].startswith("application/vnd.ipld.car")
    assert len(list(core.car.CarReader.open(io.BytesIO(await car_resp.read())).blocks())) >= 1
    data = await (await loaded.fetch(f"ipfs://{DIR}/?format=car")).read()
    reader = core.car.CarReader.open(io.BytesIO(data))
    assert [core.cids.v1_base32(r) for r in reader.roots] == [DIR] and len(list(reader.blocks())) == 9
    nope = await loaded.fetch(f"ipfs://{DIR}/", headers={"Accept": "application/vnd.ipld.dag-json"})
    assert nope.status == 406


async def test_errors_invalid_cid_400_missing_root_404(loaded):
    bad = await loaded.fetch("ipfs://bafyinvalid/")
    assert bad.status == 400 and "not a valid CID" in await bad.text()
    missing = await loaded.fetch("ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy/")
    assert missing.status == 404 and "not in the local block store" in await missing.text()


async def test_a_missing_block_mid_file_aborts_the_stream_instead_of_sending_wrong_bytes(ipfs, tmp_path):
    import protoreg
    from tests.handlers.ipfs.helpers import store_for

    reg, state, import_car = ipfs
    import_car(car("dir-with-files.car"))
    store = store_for(reg.extensions["ipfs@protoreg"], state)
    fs = core.unixfs.UnixFS(store)
    entry, _ = fs.resolve(core.cids.parse_cid(DIR), "multiblock.txt")
    third = core.cids.parse_cid(bytes(entry.node.links[2].hash))
    store._path(third).unlink()
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        resp = await s.fetch(f"ipfs://{DIR}/multiblock.txt")
        assert resp.status == 200
        with pytest.raises(protoreg.HandlerError, match="not in the local block store"):
            await resp.read()


async def test_through_the_gateway_with_cidv0_path_form_redirecting_to_cidv1(ipfs, aiohttp_client):
    import protoreg

    reg, state, import_car = ipfs
    import_car(car("subdomain_gateway.car"))
    import_car(car("dir-with-files.car"))
    from protoreg.gateway.hosts import site_label

    owner = reg.lookup("ipfs").extension.id

    def full(cid: str) -> str:
        return f"{cid}.ipfs.{site_label(owner, 'ipfs', cid)}.localhost:8080"

    client = await aiohttp_client(create_app(reg, config=protoreg.WorkerConfig(state_dir=str(state))))
    resp = await client.get("/hello.txt", headers={"Host": full(DIR)})
    assert resp.status == 200 and await resp.read() == b"hello world\n"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    moved = await client.get("/ipfs/QmYiPNLU7Hc739sqcBH5DgVmk5mKTQVzKSqvJJeNGWTgrE/", allow_redirects=False,
                             headers={"Host": "localhost:8080"})
    v1 = "bafybeie2ezgriv3qzmw3k7lurysjr7rbky4dahjwtz3mt6ci67qid2kjum"
    assert moved.status == 301 and moved.headers["Location"] == f"http://{full(v1)}/"
    page = await client.get("/", headers={"Host": full(v1)})
    assert page.status == 200


async def test_a_browser_gets_styled_error_pages_from_the_handler_and_curl_gets_text(loaded):
    page = await loaded.fetch(f"ipfs://{DIR}/missing", headers={"Accept": "text/html"})
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "What to try" in await page.text()
    post = await loaded.fetch(f"ipfs://{DIR}/", method="POST", body=b"x", headers={"Accept": "text/html"})
    text = await post.text()
    assert post.status == 405 and "<h1>405 Method Not Allowed</h1>" in text and post.headers["Allow"] == "GET, HEAD"
    plain = await loaded.fetch(f"ipfs://{DIR}/", method="POST", body=b"x")
    assert plain.status == 405 and "read-only" in await plain.text()
    assert not plain.headers["Content-Type"].startswith("text/html")


async def test_local_raw_leaves_go_by_reference_and_a_corrupt_one_is_caught_by_the_parent(ipfs, monkeypatch):
    """The handler names each locally held raw leaf (a FILE frame) instead of sending it; the parent verifies it.
    Checked from the parent: how many references arrived, and what a block corrupted on disk does."""
    import os
    import threading

    import protoreg
    from protoreg.ipc import InboundBody
    from tests.handlers.ipfs.helpers import data_dir_for, store_for

    reg, state, _ = ipfs
    ext = reg.extensions["ipfs@protoreg"]
    store = store_for(ext, state)
    data = os.urandom(4 * 256 * 1024 + 100)  # five raw leaves under one dag-pb node
    cid = core.cids.v1_base32(core.importer.add_file(io.BytesIO(data), store.put).cid)
    refs = []
    feed_ref = InboundBody.feed_ref
    monkeypatch.setattr(InboundBody, "feed_ref", lambda self, ref: (refs.append(ref), feed_ref(self, ref))[1])
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        assert await (await s.fetch(f"ipfs://{cid}/")).read() == data
        assert len(refs) == 5 and all(r["path"].startswith("blocks/") for r in refs)
        ranged = await s.fetch(f"ipfs://{cid}/", headers={"Range": "bytes=300000-300009"})
        assert (ranged.status, await ranged.read()) == (206, data[300000:300010])
        leaf = data_dir_for(ext, state) / refs[2]["path"]
        leaf.write_bytes(b"\0" + leaf.read_bytes()[1:])  # same size: only the hash can tell
        # (past the parent's cache of the first, verified answer: protoreg/cache.py)
        resp = await s.fetch(f"ipfs://{cid}/", headers={"Cache-Control": "no-cache"})
        assert resp.status == 200
        with pytest.raises(protoreg.HandlerError, match="does not have the sha256"):
            await resp.read()
        assert any(t.name.startswith("protoreg-file") for t in threading.enumerate())
    # the threads that read FILE frames end with the session
    assert not any(t.name.startswith("protoreg-file") for t in threading.enumerate())
