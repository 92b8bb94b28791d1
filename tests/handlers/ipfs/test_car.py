"""CAR reading from any stream, refusal of malformed CARs with the offending block named, verified import."""

from __future__ import annotations

import io

import pytest

from tests.handlers.ipfs.conftest import car, core

carmod = core.car
DIR = "bafybeihchr7vmgjaasntayyatmp5sv6xza57iy2h4xj7g46bpjij6yhrmy"


class Pipe(io.RawIOBase):
    """A read-only, non-seekable stream that hands out at most 7 bytes per read (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self.buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.buf.read(min(n, 7) if n >= 0 else 7)


def carv2(v1: bytes) -> bytes:
    return carmod.PRAGMA_V2 + bytes(16) + (51).to_bytes(8, "little") + len(v1).to_bytes(8, "little") + bytes(8) + v1


def test_import_reads_carv1_and_carv2_from_a_non_seekable_stream(store):
    v1 = car("dir-with-files.car").read_bytes()
    assert carmod.import_car(Pipe(v1), store).blocks == 9
    report = carmod.import_car(Pipe(carv2(v1)), store)
    assert (report.blocks, report.new_blocks) == (9, 0)


def test_import_accepts_a_path_and_reports_progress_up_to_the_end(store):
    path = car("dir-with-files.car")
    seen: list[int] = []
    report = carmod.import_car(path, store, progress=seen.append)
    assert [core.cids.v1_base32(r) for r in report.roots] == [DIR]
    assert len(seen) == 9 and seen == sorted(seen) and seen[-1] == path.stat().st_size


def test_a_truncated_car_names_the_cut_block_and_keeps_the_earlier_ones(store):
    data = car("dir-with-files.car").read_bytes()
    with pytest.raises(carmod.CarError, match=r"truncated in block baf\w+ at byte \d+.*8 blocks before it"):
        carmod.import_car(io.BytesIO(data[:-1]), store)
    assert len(store) == 8
    with pytest.raises(carmod.CarError, match=r"truncated in a block whose CID is cut short at byte \d+"):
        carmod.import_car(io.BytesIO(data[:-30]), store)


def test_an_oversized_section_is_refused_before_it_is_read(store):
    header = carmod.encode_header([core.cids.parse_cid(DIR)])
    data = carmod.varint(len(header)) + header + carmod.varint(1 << 40) + b"x" * 10
    with pytest.raises(carmod.CarError, match=r"section at byte \d+ of the CAR declares 1099511627776 bytes"):
        carmod.import_car(io.BytesIO(data), store)


@pytest.mark.parametrize("section, message", [
    (b"\x01\x55\xff\x7f\x01a", "malformed CID in the section at byte"),
    (b"\x01\x55\x12\x20abc", "malformed CID in the section at byte"),
    (b"", "empty section at byte"),
])
def test_a_section_with_a_malformed_cid_is_refused_naming_its_offset(store, section, message):
    good = car("dir-with-files.car").read_bytes()
    data = good + carmod.varint(len(section)) + section
    with pytest.raises(carmod.CarError, match=message) as info:
        carmod.import_car(io.BytesIO(data), store)
    assert f"at byte {len(good)}" in str(info.value) and len(store) == 9


@pytest.mark.parametrize("data", [b"", b"not a car at all", b"\x05\xa1abcd", bytes(carmod.PRAGMA_V2) + b"\x00" * 8])
def test_input_that_is_not_a_car_is_refused_with_car_error(store, data):
    with pytest.raises(carmod.CarError):
        carmod.import_car(io.BytesIO(data), store)
    assert len(store) == 0


def test_a_flipped_byte_is_caught_by_verification_naming_the_block(store):
    data = bytearray(car("dir-with-files.car").read_bytes())
    data[-5] ^= 0x01
    with pytest.raises(carmod.CarError, match=r"block bafk\w+ at byte \d+ of the CAR failed verification"):
        carmod.import_car(io.BytesIO(bytes(data)), store)
    assert len(store) == 8


def test_written_car_is_read_back_with_the_same_roots_and_blocks():
    blocks = [(core.cids.raw_cid(b), b) for b in (b"one", b"two", b"")]
    data = b"".join(carmod.write_car([blocks[0][0]], blocks))
    reader = carmod.CarReader.open(io.BytesIO(data))
    assert reader.roots == [blocks[0][0]] and reader.version == 1
    assert [(c, d) for c, d, _ in reader.blocks()] == blocks


# -- hostile headers and CIDs: always a CarError (an IpfsError) naming the byte offset ------------------------------
def _car(header: bytes, sections: bytes = b"") -> bytes:
    return carmod.varint(len(header)) + header + sections


def _header(roots_cbor: bytes) -> bytes:
    return b"\xa2\x65roots" + roots_cbor + b"\x67version\x01"


def _long_digest_cid(n: int) -> bytes:
    return bytes([1, 0x55, 0x12, n]) + b"a" * n  # sha2-256 digests are 32 bytes


@pytest.mark.parametrize("header, message", [
    (b"\x81" * 3000 + b"\x00", r"nested more than 8 levels deep at byte \d+"),
    (b"\xa1\x80\x00", r"map key that is not a string at byte 2"),
    (_header(b"\x81\x01"), r"roots\[0\] \(header at byte 1\) is 1, not a CID link"),
    (_header(b"\x82\xd8\x2a\x42\x00\x01\x63abc"), r"malformed CID in the CAR header at byte \d+"),
    (_header(b"\x81\xd8\x2a\x58\x45\x00" + _long_digest_cid(64)), r"malformed CID in the CAR header at byte 9: .*"
                                                                  r"max digest size 32"),
    (b"\xa1\x63\xff\xfe\xfd\x00", r"text string at byte 2 is not UTF-8"),
])
def test_a_hostile_car_header_is_a_car_error_naming_the_offset(store, header, message):
    with pytest.raises(carmod.CarError, match=message) as info:
        carmod.import_car(io.BytesIO(_car(header)), store)
    assert isinstance(info.value, core.IpfsError) and len(store) == 0


def test_a_section_cid_whose_digest_is_longer_than_its_hash_allows_is_a_car_error(store):
    header = carmod.encode_header([core.cids.parse_cid(DIR)])
    raw = _long_digest_cid(64)
    section = carmod.varint(len(raw) + 3) + raw + b"abc"
    start = len(carmod.varint(len(header))) + len(header)
    with pytest.raises(carmod.CarError, match=rf"malformed CID in the section at byte {start} .*max digest size 32"):
        carmod.import_car(io.BytesIO(_car(header, section)), store)


def test_parse_cid_refuses_a_digest_longer_than_its_hash_allows():
    from multiformats import CID

    text = str(CID.decode(_long_digest_cid(40)).set(base="base32"))
    with pytest.raises(core.InvalidCID, match="invalid multihash"):
        core.cids.parse_cid(text)


@pytest.mark.parametrize("header", [b"\xa1\x80\x00", _header(b"\x81\x01"), b"\x81" * 3000 + b"\x00"])
def test_protoreg_ipfs_import_prints_the_car_error_without_internal_error(tmp_path, capsys, header):
    from protoreg.cli import main

    path = tmp_path / "bad.car"
    path.write_bytes(_car(header))
    assert main(["ipfs", "import", str(path), "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert f"protoreg ipfs import: {path}: " in err and "at byte" in err
    assert "internal error" not in err and "Traceback" not in err
