"""The gateway semantics as a pure function over a block store (no worker, no HTTP framework)."""

from __future__ import annotations

import io
import re

import pytest
from multiformats import CID

from tests.handlers.ipfs.conftest import car, core

DIR = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"
HELLO = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
CACHE = "bafybeib3ffl2teiqdncv3mkz4r23b5ctrwkzrrhctdbne6iboayxuxk5ui"
IMMUTABLE = "public, max-age=29030400, immutable"


def _getter(store):
    def get(url: str, method: str = "GET", **headers: str):
        m = re.fullmatch(r"ipfs://([^/?]+)([^?]*)(?:\?(.*))?", url)
        query = dict(p.split("=", 1) for p in (m.group(3) or "").split("&") if p)
        res = core.gateway.respond(store, method, m.group(1), m.group(2),
                                   query, {k.replace("_", "-").lower(): v for k, v in headers.items()})
        body = res.body if isinstance(res.body, bytes) else b"".join(res.body)
        return res.status, dict(res.headers), body

    get.store = store
    return get


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """All the fixture CARs in one store, imported once (tests that change the store use ``own``)."""
    store = core.blocks.BlockStore(tmp_path_factory.mktemp("gateway") / "blocks")
    for name in ("dir-with-files.car", "dir_listing.car", "gateway_cache.car", "symlink.car",
                 "subdomain_gateway.car", "single-layer-hamt-with-multi-block-files.car",
                 "dir-with-percent-encoded-filename.car", "gateway-raw-block.car"):
        core.car.import_car(car(name), store)
    return _getter(store)


@pytest.fixture
def own(store):
    core.car.import_car(car("dir-with-files.car"), store)
    return _getter(store)


def test_a_file_has_its_bytes_etag_immutable_caching_and_ipfs_headers(gw):
    status, h, body = gw(f"ipfs://{DIR}/hello.txt")
    assert (status, body) == (200, b"hello world\n")
    assert h["ETag"] == f'"{HELLO}"' and h["Cache-Control"] == IMMUTABLE
    assert h["X-Ipfs-Path"] == f"/ipfs/{DIR}/hello.txt" and h["X-Ipfs-Roots"] == f"{DIR},{HELLO}"
    assert h["Content-Type"] == "text/plain; charset=utf-8" and h["Content-Length"] == "12"


def test_head_sends_the_headers_without_the_body(gw):
    status, h, body = gw(f"ipfs://{DIR}/ascii.txt", method="HEAD")
    assert (status, h["Content-Length"], body) == (200, "31", b"")


@pytest.mark.parametrize("rng, status, content_range, part", [
    ("bytes=6-16", 206, "bytes 6-16/31", slice(6, 17)),
    ("bytes=-3", 206, "bytes 28-30/31", slice(28, 31)),
    ("bytes=20-", 206, "bytes 20-30/31", slice(20, 31)),
    ("bytes=25-1000", 206, "bytes 25-30/31", slice(25, 31)),
    ("bytes=0-1,5-6", 206, "bytes 0-1/31", slice(0, 2)),  # multi-range: the first range only (documented)
    ("bytes=100-200", 416, "bytes */31", slice(0, 0)),
    ("bytes=16-6", 416, "bytes */31", slice(0, 0)),
])
def test_single_ranges_give_206_and_unsatisfiable_ones_416(gw, rng, status, content_range, part):
    whole = gw(f"ipfs://{DIR}/ascii.txt")[2]
    got = gw(f"ipfs://{DIR}/ascii.txt", range=rng)
    assert (got[0], got[1]["Content-Range"], got[2]) == (status, content_range, whole[part])


def test_a_range_across_chunks_of_multiblock_txt_is_exact(gw):
    whole = gw(f"ipfs://{DIR}/multiblock.txt")[2]
    assert len(whole) == 1026
    status, h, body = gw(f"ipfs://{DIR}/multiblock.txt", range="bytes=250-770")
    assert (status, h["Content-Range"], body) == (206, "bytes 250-770/1026", whole[250:771])


def test_a_directory_without_slash_redirects_keeping_its_query_encoded(gw):
    root = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"
    status, h, _ = gw(f"ipfs://{root}/%C4%85/%C4%99?x=a b&y=1")
    assert status == 301 and h["Location"] == "/%C4%85/%C4%99/?x=a+b&y=1"


def test_directory_with_index_html_serves_it_with_the_directory_cid_as_etag(gw):
    status, h, body = gw(f"ipfs://{CACHE}/root2/root3/root4/")
    roots = h["X-Ipfs-Roots"].split(",")
    assert status == 200 and h["Content-Type"].startswith("text/html") and body
    assert len(roots) == 4 and h["ETag"] == f'"{roots[-1]}"' and h["Cache-Control"] == IMMUTABLE
    file = gw(f"ipfs://{CACHE}/root2/root3/root4/index.html")
    assert file[1]["ETag"] != h["ETag"] and len(file[1]["X-Ipfs-Roots"].split(",")) == 5


@pytest.mark.parametrize("if_none_match", ['"{etag}"', 'W/"{etag}"', '"fake1", "fake2", "{etag}"', "*"])
def test_if_none_match_gives_304_for_exact_weak_listed_and_wildcard_tags(gw, if_none_match):
    url = f"ipfs://{CACHE}/root2/root3/root4/index.html"
    etag = gw(url)[1]["ETag"].strip('"')
    status, h, body = gw(url, if_none_match=if_none_match.format(etag=etag))
    assert (status, body) == (304, b"") and h["ETag"] == f'"{etag}"'
    assert gw(url, if_none_match='"something-else"')[0] == 200


def test_a_generated_listing_is_escaped_not_immutable_and_has_a_dirindex_etag(own, tmp_path):
    gw = own
    site = tmp_path / "site"
    site.mkdir()
    (site / '<img src=x onerror=alert(1)>&"q".txt').write_bytes(b"x")
    blocks: list = []
    built = core.importer.add_path(site, lambda c, d: blocks.append((c, d)))
    for c, d in blocks:
        gw.store.put(c, d)
    cid = core.cids.v1_base32(built.cid)
    status, h, body = gw(f"ipfs://{cid}/")
    text = body.decode()
    assert status == 200 and "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;q&quot;.txt" in text
    assert "default-src 'none'" in h["Content-Security-Policy"] and "Cache-Control" not in h
    assert re.fullmatch(rf'"DirIndex-\w+_CID-{cid}"', h["ETag"])
    assert gw(f"ipfs://{cid}/", if_none_match=h["ETag"])[0] == 304
    assert gw(f"ipfs://{cid}/", if_none_match=f'W/"{cid}"')[0] == 304


def test_utf8_listing_shows_names_sizes_and_cids(gw):
    root = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"
    status, _, body = gw(f"ipfs://{root}/%C4%85/%C4%99/")
    text = body.decode()
    assert status == 200 and "file-źł.txt" in text and re.search(r"<code>bafk\w+</code>", text)
    assert gw(f"ipfs://{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt")[0] == 200


def test_percent_encoded_names_in_a_listing_link_to_their_files(gw):
    root = "bafybeig675grnxcmshiuzdaz2xalm6ef4thxxds6o6ypakpghm5kghpc34"
    listing = gw(f"ipfs://{root}/")[2].decode()
    hrefs = [h for h in re.findall(r'href="([^"]+)"', listing) if h != ".." and not h.startswith("data:")]
    assert hrefs and all(gw(f"ipfs://{root}{href}")[0] == 200 for href in hrefs)


def test_symlink_answers_200_with_its_target(gw):
    root = core.cids.v1_base32(CID.decode("QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"))
    assert gw(f"ipfs://{root}/bar")[::2] == (200, b"foo")
    assert gw(f"ipfs://{root}/foo")[::2] == (200, b"content\n")


def test_hamt_names_resolve_and_an_unknown_name_is_404(gw):
    root = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
    assert gw(f"ipfs://{root}/1.txt")[0] == 200
    status, _, body = gw(f"ipfs://{root}/1001.txt")
    assert status == 404 and b"no entry named '1001.txt'" in body


def test_cidv0_root_redirects_to_its_cidv1_base32_form(gw):
    status, h, _ = gw("ipfs://QmYiPNLU7Hc739sqcBH5DgVmk5mKTQVzKSqvJJeNGWTgrE/x")
    v1 = "bafybeie2ezgriv3qzmw3k7lurysjr7rbky4dahjwtz3mt6ci67qid2kjum"
    assert status == 301 and h["Location"] == f"ipfs://{v1}/x"
    assert gw(f"ipfs://{v1}/")[0] == 200


def test_invalid_cid_is_400_and_a_missing_root_404_saying_why(gw):
    status, h, body = gw("ipfs://bafyinvalid/")
    assert status == 400 and b"not a valid CID" in body and h["X-Content-Type-Options"] == "nosniff"
    status, _, body = gw("ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy/")
    assert status == 404 and b"not in the local block store" in body


def test_raw_format_returns_the_block_and_format_beats_accept(gw):
    status, h, body = gw(f"ipfs://{DIR}/hello.txt?format=raw", accept="application/vnd.ipld.car")
    assert (status, h["Content-Type"], body) == (200, "application/vnd.ipld.raw", b"hello world\n")
    assert h["X-Content-Type-Options"] == "nosniff" and h["ETag"] == f'"{HELLO}.raw"'
    assert h["Content-Disposition"] == f'attachment; filename="{HELLO}.bin"'
    root = "bafybeie72edlprgtlwwctzljf6gkn2wnlrddqjbkxo3jomh4n7omwblxly"
    via_accept = gw(f"ipfs://{root}/", accept="application/vnd.ipld.raw")
    assert via_accept[2] == gw.store.get(CID.decode(root))


def test_accept_or_format_naming_something_unsupported_is_406_or_400(gw):
    assert gw(f"ipfs://{DIR}/", accept="application/vnd.ipld.dag-json")[0] == 406
    assert gw(f"ipfs://{DIR}/?format=tar")[0] == 400


def test_car_format_exports_the_dag_and_re_imports_to_the_same_blocks(gw, tmp_path):
    status, h, body = gw(f"ipfs://{DIR}/?format=car")
    assert status == 200 and h["Content-Type"] == "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    assert h["Content-Disposition"] == f'attachment; filename="{DIR}.car"'
    other = core.blocks.BlockStore(tmp_path / "other")
    report = core.car.import_car(io.BytesIO(body), other)
    assert [core.cids.v1_base32(r) for r in report.roots] == [DIR] and report.blocks == 9
    fs = core.unixfs.UnixFS(gw.store)
    assert sorted(p.name for p in other) == sorted(
        other._path(c).name for c, _ in fs.walk(CID.decode(DIR)))


def test_a_missing_block_mid_file_raises_from_the_body_after_the_good_bytes(own):
    gw = own
    fs = core.unixfs.UnixFS(gw.store)
    entry, _ = fs.resolve(CID.decode(DIR), "multiblock.txt")
    gw.store._path(core.cids.decode_link(entry.node.links[2].hash)).unlink()
    res = core.gateway.respond(gw.store, "GET", DIR, "/multiblock.txt", {}, {})
    assert res.status == 200 and dict(res.headers)["Content-Length"] == "1026"
    chunks = iter(res.body)
    assert len(next(chunks)) + len(next(chunks)) == 512
    with pytest.raises(core.BlockNotFound, match="not in the local block store"):
        next(chunks)


def test_a_block_missing_before_the_body_starts_is_an_error_response(own, tmp_path):
    gw = own
    site = tmp_path / "site"
    site.mkdir()
    (site / "noextension").write_bytes(b"a" * 600)
    blocks: list = []
    built = core.importer.add_path(site, lambda c, d: blocks.append((c, d)), chunk=256)
    for c, d in blocks:
        gw.store.put(c, d)
    gw.store._path(blocks[0][0]).unlink()  # the first chunk, needed for content sniffing
    status, _, body = gw(f"ipfs://{core.cids.v1_base32(built.cid)}/noextension")
    assert status == 404 and b"not in the local block store" in body


def test_a_car_for_a_path_carries_the_blocks_that_verify_the_path_from_the_root(gw, tmp_path):
    root = "bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i"
    status, _, body = gw(f"ipfs://{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt?format=car")
    other = core.blocks.BlockStore(tmp_path / "verify")
    report = core.car.import_car(io.BytesIO(body), other)
    assert status == 200 and [core.cids.v1_base32(r) for r in report.roots] == [root] and report.blocks == 4
    entry, _ = core.unixfs.UnixFS(other).resolve(CID.decode(root), "ą/ę/file-źł.txt")  # verifiable offline
    assert entry.kind == "file"


def test_identity_blocks_are_left_out_of_car_responses(own):
    from multiformats import multihash

    inline = CID("base32", 1, "raw", multihash.digest(b"tiny", "identity"))
    node = core.dagpb.encode_node(core.dagpb.PBNode(
        [core.dagpb.PBLink(bytes(inline), "tiny.txt", 4)], core.dagpb.encode_unixfs(core.dagpb.UnixFSData(1))))
    cid = core.cids.dagpb_cid(node)
    own.store.put(cid, node)
    assert own(f"ipfs://{core.cids.v1_base32(cid)}/tiny.txt")[::2] == (200, b"tiny")
    body = own(f"ipfs://{core.cids.v1_base32(cid)}/?format=car")[2]
    assert [c for c, _, _ in core.car.CarReader.open(io.BytesIO(body)).blocks()] == [cid]


def test_only_if_cached_is_412_when_the_root_block_is_absent(gw):
    absent = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    assert gw(f"ipfs://{absent}/", cache_control="only-if-cached")[0] == 412
    assert gw(f"ipfs://{DIR}/hello.txt", cache_control="only-if-cached")[0] == 200


# -- pages a person reads ---------------------------------------------------------------------------------------------
def test_errors_are_styled_pages_for_browsers_and_plain_text_otherwise(gw):
    missing = f"ipfs://{DIR}/no-such-file"
    status, h, body = gw(missing, accept="text/html,application/xhtml+xml,*/*;q=0.8")
    text = body.decode()
    assert status == 404 and h["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>404 Not Found</h1>" in text and "no entry named &#x27;no-such-file&#x27;" in text
    assert "What to try" in text and '<a href="/">' in text and "<script" not in text
    assert "default-src 'none'" in h["Content-Security-Policy"] and int(h["Content-Length"]) == len(body)
    status, h, body = gw(missing)  # curl, fetch(): plain text as before
    assert status == 404 and h["Content-Type"].startswith("text/plain") and body.startswith(b"no entry named")
    status, h, body = gw("ipfs://not-a-cid/", accept="text/html")
    assert status == 400 and "<h1>400 Bad Request</h1>" in body.decode()
    assert gw(missing, "HEAD", accept="text/html")[::2] == (404, b"")


def test_a_listing_shows_each_file_size_not_its_dag_size_and_wraps_cids(own, tmp_path):
    gw = own
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "big.bin").write_bytes(b"x" * 300_000)  # several blocks: its DAG size (Tsize) is larger
    (site / "small.txt").write_bytes(b"hello")
    blocks: list = []
    built = core.importer.add_path(site, lambda c, d: blocks.append((c, d)))
    for c, d in blocks:
        gw.store.put(c, d)
    text = gw(f"ipfs://{core.cids.v1_base32(built.cid)}/")[2].decode()
    assert '<td class=size title="300,000 bytes">293.0 KiB</td>' in text
    assert '<td class=size title="5 bytes">5 B</td>' in text
    assert '<a class="dir" href="/sub">sub</a>' in text and "3 entries" in text
    assert "word-break:break-all" in text and "<script" not in text


def _car_cids(body: bytes) -> list[str]:
    reader = core.car.CarReader.open(io.BytesIO(body))
    return [core.cids.v1_base32(c) for c, _, _ in reader.blocks()]


def test_car_dag_scopes_block_entity_all(gw):
    multi = gw(f"ipfs://{DIR}/multiblock.txt?format=raw")[2]
    node = core.dagpb.decode_node(multi)
    leaves = [core.cids.v1_base32(core.cids.decode_link(link.hash)) for link in node.links]
    file_cid = core.cids.v1_base32(core.cids.dagpb_cid(multi))
    _, h_block, block = gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=block")
    assert _car_cids(block) == [DIR, file_cid]
    _, h_entity, entity = gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=entity")
    assert _car_cids(entity) == [DIR, file_cid, *leaves]
    assert h_block["ETag"] != h_entity["ETag"]
    # a directory's entity is its own node (not its children); all is the whole DAG
    assert _car_cids(gw(f"ipfs://{DIR}/?format=car&dag-scope=entity")[2]) == [DIR]
    assert len(_car_cids(gw(f"ipfs://{DIR}/?format=car&dag-scope=all")[2])) == 9
    assert gw(f"ipfs://{DIR}/?format=car&dag-scope=nope")[0] == 400


@pytest.mark.parametrize("spec, chunks", [("0:255", [0]), ("256:511", [1]), ("250:260", [0, 1]),
                                          ("-3:*", [3, 4]), ("-2:*", [4]), ("1000:*", [3, 4]), ("0:*", [0, 1, 2, 3, 4]),
                                          ("-1030:-1000", [0])])
def test_car_entity_bytes_selects_the_chunks_a_range_needs(gw, spec, chunks):
    multi = gw(f"ipfs://{DIR}/multiblock.txt?format=raw")[2]
    node = core.dagpb.decode_node(multi)
    leaves = [core.cids.v1_base32(core.cids.decode_link(link.hash)) for link in node.links]
    assert len(leaves) == 5  # 4 x 256 B + 2 B
    status, _, body = gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=entity&entity-bytes={spec}")
    assert status == 200
    assert _car_cids(body)[2:] == [leaves[i] for i in chunks]


def test_car_entity_bytes_errors(gw):
    assert gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=all&entity-bytes=0:1")[0] == 400
    assert gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=entity&entity-bytes=5:1")[0] == 400
    assert gw(f"ipfs://{DIR}/multiblock.txt?format=car&dag-scope=entity&entity-bytes=x")[0] == 400


def test_a_car_for_a_path_through_a_hamt_carries_its_sub_shards(gw, tmp_path):
    hamt = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"
    name = core.unixfs.UnixFS(gw.store).list(core.unixfs.UnixFS(gw.store).load(CID.decode(hamt)))[500].name
    status, _, body = gw(f"ipfs://{hamt}/{name}?format=car&dag-scope=block")
    assert status == 200
    other = core.blocks.BlockStore(tmp_path / "hamt-proof")
    core.car.import_car(io.BytesIO(body), other)
    entry, _ = core.unixfs.UnixFS(other).resolve(CID.decode(hamt), name)  # verifiable offline: shards included
    assert entry.cid is not None
    assert len(_car_cids(body)) >= 3  # root shard, at least one sub-shard, the file's block
