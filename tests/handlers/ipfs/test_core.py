"""The ipfs bundle's core: verified storage, CAR import/export, UnixFS and HAMT reading, kubo-compatible adding."""

from __future__ import annotations

import io
import os

import pytest
from multiformats import CID

from tests.handlers.ipfs.conftest import car, core

DIR = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"
HAMT = "bafybeidbclfqleg2uojchspzd4bob56dqetqjsj27gy2cq3klkkgxtpn4i"


def load(store, name):
    with car(name).open("rb") as f:
        return core.car.import_car(f, store)


def test_hello_world_gets_kubos_cid():
    built = core.importer.add_file(io.BytesIO(b"hello world\n"), lambda c, d: None)
    assert core.cids.v1_base32(built.cid) == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def test_import_verifies_and_stores_every_block(store):
    report = load(store, "dir-with-files.car")
    assert [core.cids.v1_base32(r) for r in report.roots] == [DIR]
    assert report.blocks == report.new_blocks == len(store) == 9


def test_rebuilding_the_fixture_directory_reproduces_kubos_cids(store, tmp_path):
    load(store, "dir-with-files.car")
    fs = core.unixfs.UnixFS(store)
    root = CID.decode(DIR)
    for item in fs.list(fs.load(root)):
        (tmp_path / item.name).write_bytes(b"".join(fs.read(fs.load(item.cid))))
    (tmp_path / "blocks").rename(tmp_path.parent / f"{tmp_path.name}-blocks")  # keep only the files
    built = core.importer.add_path(tmp_path, lambda c, d: None, chunk=256)  # the fixture used 256-byte chunks
    assert core.cids.v1_base32(built.cid) == DIR


def test_a_corrupt_car_is_refused_naming_the_block_and_earlier_blocks_are_kept(store, tmp_path):
    data = bytearray(car("dir-with-files.car").read_bytes())
    data[-5] ^= 0xFF  # flip a byte inside the last block
    with pytest.raises(core.car.CarError, match=r"block bafk\w+ at byte \d+ of the CAR failed verification") as info:
        core.car.import_car(io.BytesIO(bytes(data)), store)
    assert "The 8 blocks before it were imported" in str(info.value)
    assert len(store) == 8


def test_a_truncated_car_is_refused(store):
    data = car("dir-with-files.car").read_bytes()[:-20]
    with pytest.raises(core.car.CarError, match="truncated"):
        core.car.import_car(io.BytesIO(data), store)
    assert len(store) == 8


def test_tampering_with_the_store_is_detected_on_read(store):
    load(store, "dir-with-files.car")
    cid = CID.decode("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    path = store._path(cid)
    path.write_bytes(b"hello w0rld\n")
    with pytest.raises(core.CorruptBlock, match="does not match its hash"):
        store.get(cid)


def test_blocks_over_2_mib_are_rejected(store):
    data = b"x" * (2 * 1024 * 1024 + 1)
    with pytest.raises(core.CorruptBlock, match="over the 2097152-byte limit"):
        store.put(core.cids.raw_cid(data), data)


def test_every_one_of_the_1000_hamt_entries_is_found_by_murmur3(store):
    load(store, "single-layer-hamt-with-multi-block-files.car")
    fs = core.unixfs.UnixFS(store)
    shard = fs.load(CID.decode(HAMT))
    items = fs.list(shard)
    assert len(items) == 1000
    assert all(fs.lookup(shard, item.name) == item.cid for item in items)
    assert fs.lookup(shard, "not-there.txt") is None


def test_carv1_export_round_trips(store, tmp_path):
    load(store, "dir-with-files.car")
    fs = core.unixfs.UnixFS(store)
    exported = b"".join(core.car.write_car([CID.decode(DIR)], fs.walk(CID.decode(DIR))))
    other = core.blocks.BlockStore(tmp_path / "other")
    report = core.car.import_car(io.BytesIO(exported), other)
    assert report.blocks == 9 and len(other) == 9


def test_carv2_is_read(store, tmp_path):
    v1 = car("dir-with-files.car").read_bytes()
    header = bytes(16) + (51).to_bytes(8, "little") + len(v1).to_bytes(8, "little") + bytes(8)
    v2 = core.car.PRAGMA_V2 + header + v1
    report = core.car.import_car(io.BytesIO(v2), store)
    assert report.blocks == 9


@pytest.mark.parametrize("size", [0, 1, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024,
                                  pytest.param(20 * 1024 * 1024, marks=pytest.mark.slow)])  # < 1 s: kept by default
def test_add_then_import_then_read_round_trips(store, size):
    data = os.urandom(size)
    collected = []
    built = core.importer.add_file(io.BytesIO(data), lambda c, d: collected.append((c, d)))
    exported = b"".join(core.car.write_car([built.cid], collected))
    core.car.import_car(io.BytesIO(exported), store)
    fs = core.unixfs.UnixFS(store)
    entry = fs.load(built.cid)
    assert entry.size == size
    assert b"".join(fs.read(entry)) == data
    if size:
        assert b"".join(fs.read(entry, size // 3, size // 3 + 1000)) == data[size // 3: size // 3 + 1000]


def test_a_second_dag_layer_is_built_and_read(store):
    data = os.urandom(40 * 1000)
    collected = []
    built = core.importer.add_file(io.BytesIO(data), lambda c, d: collected.append((c, d)), chunk=1000, max_links=4)
    for cid, block in collected:
        store.put(cid, block)
    fs = core.unixfs.UnixFS(store)
    assert b"".join(fs.read(fs.load(built.cid))) == data
    assert b"".join(fs.read(fs.load(built.cid), 12345, 23456)) == data[12345:23456]


def test_malformed_nodes_are_rejected_cleanly():
    with pytest.raises(core.MalformedNode):
        core.dagpb.decode_node(b"\x0a\xff\xff")
    with pytest.raises(core.MalformedNode):
        core.dagpb.decode_node(b"\x1a\x00")  # field 3 is not part of PBNode


def test_invalid_cids_say_what_is_wrong():
    with pytest.raises(core.InvalidCID, match="not a valid CID"):
        core.cids.parse_cid("bafyNOPE")
    with pytest.raises(core.InvalidCID, match="CIDv0 is case-sensitive"):
        core.cids.parse_cid("qmyipnlu7hc739sqcbh5dgvmk5mktqvzkqvjjnggwtgre")


def test_the_committed_demo_car_is_a_fresh_add_of_its_source():
    from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE

    built, blocks = core.importer.add_to_blocks(IPFS_BUNDLE / "demo")
    assert b"".join(core.car.write_car([built.cid], blocks)) == DEMO_CAR.read_bytes()
