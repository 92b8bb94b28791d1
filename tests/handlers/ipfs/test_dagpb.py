"""dag-pb decoding is strict (ipld specs/codecs/dag-pb): field order, multiplicity, wire types, UTF-8 names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from tests.handlers.ipfs.conftest import car, core

dagpb = core.dagpb
HELLO = CID.decode("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
LINK = dagpb._ld(1, bytes(HELLO))  # a PBLink holding just a Hash


def node(*fields: bytes) -> bytes:
    return b"".join(fields)


def test_encoding_puts_links_before_data_and_round_trips():
    n = dagpb.PBNode([dagpb.PBLink(bytes(HELLO), "hello.txt", 12)], b"\x08\x01")
    raw = dagpb.encode_node(n)
    assert raw[0] == 0x12  # field 2 (Links), wire type 2, comes first
    assert dagpb.decode_node(raw) == n


@pytest.mark.parametrize("raw, message", [
    (node(dagpb._ld(1, b"\x08\x01"), dagpb._ld(2, LINK)), "Link after its Data"),
    (node(dagpb._ld(1, b"a"), dagpb._ld(1, b"b")), "more than one Data"),
    (node(dagpb._ld(3, b"x")), "unexpected field 3"),
    (node(b"\x10\x01"), r"unexpected field 2 \(wire type 0\)"),
    (node(dagpb._ld(2, dagpb._ld(2, b"name") + LINK)), "out of order"),
    (node(dagpb._ld(2, LINK + LINK)), "repeated or out of order"),
    (node(dagpb._ld(2, dagpb._ld(2, b"name"))), "out of order|without a Hash"),
    (node(dagpb._ld(2, b"")), "without a Hash"),
    (node(dagpb._ld(2, LINK + dagpb._ld(2, b"\xff\xfe"))), "not valid UTF-8"),
    (node(dagpb._ld(2, LINK + dagpb._ld(4, b""))), "unexpected field 4"),
    (b"\x0a\xff\xff", "truncated or oversized varint|runs past the end"),
    (b"\x0a\x05ab", "runs past the end"),
])
def test_malformed_nodes_are_rejected_with_the_reason(raw, message):
    with pytest.raises(core.MalformedNode, match=message):
        dagpb.decode_node(raw)


def test_a_link_hash_that_is_not_a_cid_makes_the_node_malformed():
    with pytest.raises(core.MalformedNode, match="not a valid CID"):
        core.cids.decode_link(b"\x01\x55\x12\x05abc")


@pytest.mark.parametrize("name", ["dir-with-files.car", "dir_listing.car", "symlink.car",
                                  "single-layer-hamt-with-multi-block-files.car"])
def test_every_dagpb_block_of_the_fixtures_re_encodes_byte_for_byte(name):
    with car(name).open("rb") as f:
        pb = [data for cid, data, _ in core.car.CarReader.open(f).blocks() if cid.codec.name == "dag-pb"]
    assert pb
    for data in pb:
        assert dagpb.encode_node(dagpb.decode_node(data)) == data
        dagpb.decode_unixfs(dagpb.decode_node(data).data or b"")


links = st.builds(dagpb.PBLink, st.just(bytes(HELLO)), st.none() | st.text(max_size=8),
                  st.none() | st.integers(0, 2**40))


@settings(max_examples=60, deadline=None)
@given(st.lists(links, max_size=4), st.none() | st.binary(max_size=16))
def test_decode_inverts_encode(ls, data):
    n = dagpb.PBNode(ls, data)
    assert dagpb.decode_node(dagpb.encode_node(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_malformed_node_only(raw):
    try:
        dagpb.decode_node(raw)
    except core.MalformedNode:
        pass


def test_unixfs_data_round_trips_and_rejects_a_missing_type():
    u = dagpb.UnixFSData(dagpb.FILE, b"abc", 3, [1, 2], None, None)
    assert dagpb.decode_unixfs(dagpb.encode_unixfs(u)) == u
    with pytest.raises(core.MalformedNode, match="no valid Type"):
        dagpb.decode_unixfs(b"")
