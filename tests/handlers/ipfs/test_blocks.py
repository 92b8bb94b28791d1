"""The block store: verified on put and again on get, keyed by multihash, atomic, 2 MiB cap, self-repairing."""

from __future__ import annotations

import pytest
from multiformats import CID, multihash

from tests.handlers.ipfs.conftest import core

raw_cid = core.cids.raw_cid


def test_put_then_get_returns_the_verified_bytes_and_has_and_len_count_it(store):
    cid = raw_cid(b"block")
    assert store.put(cid, b"block") is True and store.put(cid, b"block") is False
    assert store.has(cid) and store.get(cid) == b"block" and len(store) == 1
    assert [p.name for p in store] == [store._path(cid).name]


def test_put_refuses_data_that_does_not_match_the_cid(store):
    with pytest.raises(core.CorruptBlock, match="does not match its hash"):
        store.put(raw_cid(b"one"), b"two")
    assert len(store) == 0


def test_cidv0_and_cidv1_of_the_same_multihash_share_one_block(store):
    node = core.dagpb.encode_node(core.dagpb.PBNode([], b"\x08\x01"))
    v1 = core.cids.dagpb_cid(node)
    v0 = v1.set(version=0, base="base58btc")
    store.put(v1, node)
    assert store.get(v0) == node and len(store) == 1


def test_a_block_tampered_with_on_disk_is_refused_on_read(store):
    cid = raw_cid(b"hello world\n")
    store.put(cid, b"hello world\n")
    store._path(cid).write_bytes(b"hello w0rld\n")
    with pytest.raises(core.CorruptBlock, match=f"block {core.cids.v1_base32(cid)} does not match its hash"):
        store.get(cid)


def test_putting_a_good_copy_repairs_a_tampered_block(store):
    cid = raw_cid(b"data")
    store.put(cid, b"data")
    store._path(cid).write_bytes(b"evil")
    assert store.put(cid, b"data") is True and store.get(cid) == b"data"


def test_a_missing_block_says_how_to_get_it(store):
    with pytest.raises(core.BlockNotFound, match=r"not in the local block store \(import a CAR"):
        store.get(raw_cid(b"absent"))


def test_blocks_over_2_mib_are_refused_on_put_and_on_get(store):
    big = b"x" * (2 * 1024 * 1024 + 1)
    cid = raw_cid(big)
    with pytest.raises(core.CorruptBlock, match="over the 2097152-byte limit"):
        store.put(cid, big)
    store._path(cid).parent.mkdir(parents=True)
    store._path(cid).write_bytes(big)  # planted behind the store's back
    with pytest.raises(core.CorruptBlock, match="over the 2097152-byte limit"):
        store.get(cid)


def test_identity_cids_are_never_written_and_read_from_the_cid_itself(store):
    cid = CID("base32", 1, "raw", multihash.digest(b"tiny", "identity"))
    assert store.put(cid, b"tiny") is False and store.get(cid) == b"tiny" and store.has(cid) and len(store) == 0


def test_other_hash_functions_are_verified_too(store):
    cid = CID("base32", 1, "raw", multihash.digest(b"blake", "blake2b-256"))
    store.put(cid, b"blake")
    assert store.get(cid) == b"blake"
    with pytest.raises(core.CorruptBlock):
        store.put(cid, b"BLAKE")


def test_no_temporary_files_are_left_or_counted(store):
    for i in range(5):
        store.put(raw_cid(bytes([i])), bytes([i]))
    assert len(store) == 5
    assert not [p for p in store.root.rglob(".tmp-*")]
