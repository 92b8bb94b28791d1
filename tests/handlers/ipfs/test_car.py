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
