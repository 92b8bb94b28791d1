"""Fuzz target: dag-pb and UnixFS decoding, and reading a hostile DAG through the gateway semantics.

Raw decoders may raise only MalformedNode; reading (resolve, list, read, respond and its streamed body) only the
ipfs core's IpfsError family.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.ipfs.helpers import ipfs_core

core = ipfs_core()
dagpb, unixfs = core.dagpb, core.unixfs
EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

_small = st.integers(0, 300) | st.integers(0, 2**64)
_unixfs_data = st.builds(dagpb.UnixFSData, type=st.integers(0, 7), data=st.none() | st.binary(max_size=40),
                         filesize=st.none() | _small, blocksizes=st.lists(_small, max_size=4),
                         hash_type=st.none() | st.sampled_from([0x22, 0x12, 0]), fanout=st.none() | st.sampled_from(
                             [0, 1, 2, 3, 16, 256, 2**40]))


@FUZZ
@given(st.binary(max_size=200))
def test_decode_node_and_unixfs_raise_only_malformed_node(buf):
    for decode in (dagpb.decode_node, dagpb.decode_unixfs):
        try:
            decode(buf)
        except core.MalformedNode:
            pass


@FUZZ
@given(_unixfs_data)
def test_encoded_unixfs_round_trips_or_is_refused(u):
    if u.type not in range(6):
        try:
            dagpb.decode_unixfs(dagpb.encode_unixfs(u))
        except core.MalformedNode:
            return
    assert dagpb.decode_unixfs(dagpb.encode_unixfs(u)) == u


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[tuple[object, bytes]], object]:
    """Blocks whose links point at earlier blocks (or nowhere), with hostile names, sizes and UnixFS fields."""
    blocks: list[tuple[object, bytes]] = []
    for _ in range(draw(st.integers(1, 6))):
        if blocks and draw(st.integers(0, 4)) == 0:
            data = draw(st.binary(max_size=30))
            blocks.append((core.cids.raw_cid(data), data))
            continue
        links = []
        for _ in range(draw(st.integers(0, 4))):
            target = (bytes(draw(st.sampled_from(blocks))[0]) if blocks and draw(st.booleans())
                      else draw(st.binary(min_size=1, max_size=40)))
            links.append(dagpb.PBLink(target, draw(st.none() | st.text(max_size=6) | st.sampled_from(
                ["index.html", "00", "FF", "1Aa", "a"])), draw(st.none() | _small)))
        data_field = draw(st.none() | _unixfs_data.map(dagpb.encode_unixfs) | st.binary(max_size=20))
        body = dagpb.encode_node(dagpb.PBNode(links, data_field)) if draw(st.integers(0, 6)) else draw(
            st.binary(max_size=60))
        blocks.append((core.cids.dagpb_cid(body), body))
    return blocks, blocks[-1][0]


@FUZZ
@given(dags(), st.sampled_from(["/", "", "/a", "/index.html", "/00/x", "/%ff", "/a/b/"]),
       st.sampled_from([{}, {"range": "bytes=1-5"}, {"range": "bytes=-3"}, {"accept": "application/vnd.ipld.car"},
                        {"accept": "application/vnd.ipld.raw"}, {"if-none-match": "*"}]))
def test_reading_a_hostile_dag_raises_only_ipfs_errors(dag, path, headers):
    blocks, root = dag
    with tempfile.TemporaryDirectory() as d:
        store = core.blocks.BlockStore(d)
        for cid, data in blocks:
            store.put(cid, data)
        fs = unixfs.UnixFS(store)
        try:
            entry, _trail = fs.resolve(root, path)
            if entry.kind == "directory":
                fs.list(entry)
            elif entry.kind == "file":
                b"".join(fs.read(entry, 0, 1000))
        except core.IpfsError:
            pass
        res = core.gateway.respond(store, "GET", core.cids.v1_base32(root), path, {}, headers)
        assert 200 <= res.status < 600
        if not isinstance(res.body, bytes):
            try:
                for _chunk in res.body:
                    pass
            except core.IpfsError:
                pass
