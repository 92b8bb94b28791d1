"""UnixFS reading: paths (percent-encoded UTF-8, HAMT), ranged reads that load only the blocks they need, and
forged DAGs refused instead of served."""

from __future__ import annotations

import io

import pytest
from multiformats import CID, multihash

from tests.handlers.ipfs.conftest import car, core

u = core.unixfs
pb = core.dagpb
DIR = CID.decode("bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy")
LISTING = CID.decode("bafybeig6ka5mlwkl4subqhaiatalkcleo4jgnr3hqwvpmsqfca27cijp3i")


class CountingStore:
    def __init__(self, store) -> None:
        self.store, self.gets = store, []

    def get(self, cid):
        self.gets.append(cid)
        return self.store.get(cid)


def load(store, name):
    core.car.import_car(car(name), store)
    return u.UnixFS(store)


def test_hello_txt_has_its_kubo_cid_bytes_and_size(store):
    entry, trail = load(store, "dir-with-files.car").resolve(DIR, "hello.txt")
    assert core.cids.v1_base32(entry.cid) == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert (entry.kind, entry.size, trail) == ("file", 12, [DIR, entry.cid])


def test_a_range_of_multiblock_txt_loads_only_the_chunks_it_touches(store):
    fs = load(store, "dir-with-files.car")
    entry, _ = fs.resolve(DIR, "multiblock.txt")
    assert entry.size == 1026 and len(entry.node.links) == 5 and entry.unixfs.blocksizes == [256] * 4 + [2]
    whole = b"".join(fs.read(entry))
    counting = u.UnixFS(CountingStore(store))
    assert b"".join(counting.read(entry, 300, 500)) == whole[300:500]
    assert [core.cids.v1_base32(c) for c in counting.store.gets] == [
        core.cids.v1_base32(core.cids.decode_link(entry.node.links[1].hash))]
    counting.store.gets.clear()
    assert b"".join(counting.read(entry, 250, 1026)) == whole[250:]
    assert len(counting.store.gets) == 5


def test_percent_encoded_utf8_segments_resolve_and_directories_list(store):
    fs = load(store, "dir_listing.car")
    entry, trail = fs.resolve(LISTING, "/%C4%85/%C4%99/file-%C5%BA%C5%82.txt")
    assert entry.kind == "file" and len(trail) == 4
    names = [i.name for i in fs.list(fs.resolve(LISTING, "")[0])]
    assert {"ą", "api", "ipfs", "ipns"} <= set(names)
    assert [i.name for i in fs.list(fs.resolve(LISTING, "ą/ę")[0])] == ["file-źł.txt"]


def test_a_missing_name_and_a_path_through_a_file_are_not_found(store):
    fs = load(store, "dir-with-files.car")
    with pytest.raises(core.BlockNotFound, match=r"no entry named 'nope\.txt'"):
        fs.resolve(DIR, "nope.txt")
    with pytest.raises(core.BlockNotFound, match="not a directory"):
        fs.resolve(DIR, "hello.txt/deeper")


def test_symlink_target_is_returned(store):
    fs = load(store, "symlink.car")
    root = CID.decode("QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt")
    entry, _ = fs.resolve(root, "bar")
    assert entry.kind == "symlink" and u.symlink_target(entry) == "foo"
    assert b"".join(fs.read(fs.resolve(root, "foo")[0])) == b"content\n"


def test_hamt_hash_is_the_first_half_of_murmur3_x64_128_big_endian():
    import mmh3

    h1 = mmh3.hash64(b"1.txt", seed=0, x64arch=True, signed=False)[0]
    assert u.hamt_hash("1.txt") == h1.to_bytes(8, "big")
    wrong_half = bytes(multihash.digest(b"1.txt", "murmur3-x64-64"))[2:]
    assert u.hamt_hash("1.txt") != wrong_half


def test_an_identity_cid_carries_its_file_inline(store):
    cid = CID("base32", 1, "raw", multihash.digest(b"inline!", "identity"))
    fs = u.UnixFS(store)
    assert b"".join(fs.read(fs.load(cid), 2)) == b"line!" and len(store) == 0


def forged_file(store, blocksizes, filesize, leaves=(b"a" * 100, b"b" * 100)):
    cids = []
    for leaf in leaves:
        cids.append(core.cids.raw_cid(leaf))
        store.put(cids[-1], leaf)
    data = pb.encode_unixfs(pb.UnixFSData(pb.FILE, filesize=filesize, blocksizes=blocksizes))
    raw = pb.encode_node(pb.PBNode([pb.PBLink(bytes(c), "", 100) for c in cids], data))
    cid = core.cids.dagpb_cid(raw)
    store.put(cid, raw)
    return cid


def test_a_file_whose_blocksizes_lie_about_a_child_is_refused_not_served_shifted(store):
    fs = u.UnixFS(store)
    entry = fs.load(forged_file(store, [100, 50], 150))
    with pytest.raises(core.MalformedNode, match="holds 50 bytes, but it holds 100"):
        b"".join(fs.read(entry))
    assert b"".join(fs.read(entry, 0, 100)) == b"a" * 100  # bytes before the lie are right


def test_a_file_whose_filesize_disagrees_with_its_blocksizes_is_refused(store):
    fs = u.UnixFS(store)
    with pytest.raises(core.MalformedNode, match="says filesize 999"):
        fs.load(forged_file(store, [100, 100], 999))
    with pytest.raises(core.MalformedNode, match="2 links but 1 blocksizes"):
        fs.load(forged_file(store, [100], 100))


def test_listing_or_looking_up_in_a_file_raises_malformed_node(store):
    fs = load(store, "dir-with-files.car")
    entry, _ = fs.resolve(DIR, "hello.txt")
    with pytest.raises(core.MalformedNode, match="not a directory"):
        fs.lookup(entry, "x")
    with pytest.raises(core.MalformedNode, match="not a symlink"):
        u.symlink_target(entry)


def test_walk_yields_each_block_of_the_dag_once_for_export(store):
    fs = load(store, "dir-with-files.car")
    walked = list(fs.walk(DIR))
    assert len(walked) == len({bytes(c.digest) for c, _ in walked}) == 9
    other = core.blocks.BlockStore(store.root.parent / "other")
    core.car.import_car(io.BytesIO(b"".join(core.car.write_car([DIR], walked))), other)
    assert sorted(p.name for p in other) == sorted(p.name for p in store)


def test_a_file_dag_nested_deeper_than_the_limit_is_malformed_not_a_recursion_error(store):
    dagpb = core.dagpb
    data = b"leaf"
    cid = core.cids.raw_cid(data)
    store.put(cid, data)
    for _ in range(1100):  # past the interpreter recursion limit; each node links to the previous one
        node = dagpb.encode_node(dagpb.PBNode([dagpb.PBLink(bytes(cid), "", len(data))],
                                              dagpb.encode_unixfs(dagpb.UnixFSData(dagpb.FILE, blocksizes=[4]))))
        cid = core.cids.dagpb_cid(node)
        store.put(cid, node)
    fs = core.unixfs.UnixFS(store)
    with pytest.raises(core.MalformedNode, match="nested more than 100 levels deep"):
        b"".join(fs.read(fs.load(cid)))
