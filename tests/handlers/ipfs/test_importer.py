"""``ipfs add`` with kubo's defaults: known CIDs, chunk boundaries, the balanced layout, directories, symlinks."""

from __future__ import annotations

import io
import os

import pytest

from tests.handlers.ipfs.conftest import core

imp = core.importer


def cid_of(data: bytes, **kw: int) -> str:
    return core.cids.v1_base32(imp.add_file(io.BytesIO(data), lambda c, d: None, **kw).cid)


class Trickle(io.RawIOBase):
    """A stream that returns at most 1000 bytes per read, as a pipe may."""

    def __init__(self, data: bytes) -> None:
        self.buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.buf.read(min(n, 1000))


def test_known_kubo_cids_for_hello_world_and_the_empty_file_and_directory(tmp_path):
    assert cid_of(b"hello world\n") == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    (tmp_path / "empty").mkdir()
    built = imp.add_path(tmp_path / "empty", lambda c, d: None)
    assert core.cids.v1_base32(built.cid) == "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def test_short_reads_from_a_pipe_do_not_change_the_chunking():
    data = os.urandom(600 * 1024)
    assert cid_of(data) == core.cids.v1_base32(imp.add_file(Trickle(data), lambda c, d: None).cid)


def test_a_file_of_exactly_two_chunks_has_two_leaves_and_no_empty_third(store):
    blocks: list = []
    built = imp.add_file(io.BytesIO(b"z" * (2 * imp.CHUNK)), lambda c, d: blocks.append((c, d)))
    fs = core.unixfs.UnixFS(store)
    for c, d in blocks:
        store.put(c, d)
    entry = fs.load(built.cid)
    assert entry.unixfs.blocksizes == [imp.CHUNK, imp.CHUNK] and len(blocks) == 2 + 1


def test_175_chunks_need_a_second_layer_of_174_plus_1(store):
    blocks: list = []
    built = imp.add_file(io.BytesIO(os.urandom(175 * 16)), lambda c, d: blocks.append((c, d)), chunk=16)
    for c, d in blocks:
        store.put(c, d)
    fs = core.unixfs.UnixFS(store)
    root = fs.load(built.cid)
    children = [fs.load(core.cids.decode_link(link.hash)) for link in root.node.links]
    assert [len(c.node.links) for c in children] == [174, 1]
    assert root.unixfs.blocksizes == [174 * 16, 16] and root.size == 175 * 16


@pytest.mark.parametrize("chunks, max_links", [(9, 3), (10, 3), (28, 3), (40, 4)])
def test_deeper_balanced_dags_round_trip_and_ranges_read_right(store, chunks, max_links):
    data = os.urandom(chunks * 100 - 37)
    blocks: list = []
    built = imp.add_file(io.BytesIO(data), lambda c, d: blocks.append((c, d)), chunk=100, max_links=max_links)
    for c, d in blocks:
        store.put(c, d)
    fs = core.unixfs.UnixFS(store)
    entry = fs.load(built.cid)
    assert len(entry.node.links) <= max_links
    assert b"".join(fs.read(entry)) == data
    assert b"".join(fs.read(entry, 123, 777)) == data[123:777]


def test_directories_sort_by_name_skip_hidden_files_and_keep_symlinks(store, tmp_path):
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "b.txt").write_bytes(b"b")
    (site / "a.txt").write_bytes(b"a")
    (site / ".hidden").write_bytes(b"secret")
    (site / "sub" / "c.txt").write_bytes(b"c")
    (site / "link").symlink_to("a.txt")
    blocks: list = []
    built = imp.add_path(site, lambda c, d: blocks.append((c, d)))
    for c, d in blocks:
        store.put(c, d)
    fs = core.unixfs.UnixFS(store)
    assert [i.name for i in fs.list(fs.load(built.cid))] == ["a.txt", "b.txt", "link", "sub"]
    link, _ = fs.resolve(built.cid, "link")
    assert link.kind == "symlink" and core.unixfs.symlink_target(link) == "a.txt"
    assert b"".join(fs.read(fs.resolve(built.cid, "sub/c.txt")[0])) == b"c"


def test_add_to_car_streams_the_same_car_as_building_it_in_memory(store, tmp_path):
    (tmp_path / "f.bin").write_bytes(os.urandom(700 * 1024))
    out = io.BytesIO()
    built = imp.add_to_car(tmp_path / "f.bin", out)
    same, blocks = imp.add_to_blocks(tmp_path / "f.bin")
    assert built.cid == same.cid
    assert out.getvalue() == b"".join(core.car.write_car([same.cid], blocks))
    report = core.car.import_car(io.BytesIO(out.getvalue()), store)
    assert report.roots == [built.cid] and report.blocks == 4


def test_bad_chunking_parameters_are_refused():
    with pytest.raises(ValueError, match="max_links"):
        imp.add_file(io.BytesIO(b"x"), lambda c, d: None, max_links=1)
