"""Fuzz target: CAR import. Only CarError (an IpfsError) may escape, and no file handle stays open."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import psutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.ipfs.helpers import ipfs_core

core = ipfs_core()
carmod = core.car
EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
_blocks = [(core.cids.raw_cid(b), b) for b in (b"one", b"two", b"")]
GOOD = b"".join(carmod.write_car([_blocks[0][0]], _blocks))


@st.composite
def cars(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:  # a good CAR with bytes flipped, cut or inserted
        data = bytearray(GOOD)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.integers(0, 2))
            if op == 0:
                data[i] = draw(st.integers(0, 255))
            elif op == 1:
                del data[i:]
                if not data:
                    break
            else:
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)
    if kind == 2:  # an arbitrary CBOR-ish header
        header = draw(st.binary(max_size=80))
        return carmod.varint(len(header)) + header
    header = b"\xa2\x65roots" + draw(st.binary(max_size=60)) + b"\x67version\x01"  # roots of any shape
    return carmod.varint(len(header)) + header + draw(st.sampled_from([b"", GOOD[50:]]))


def _fds() -> int:
    return psutil.Process().num_fds()


@FUZZ
@given(cars(), st.booleans())
def test_car_import_raises_only_car_error_and_leaves_no_open_files(data, as_v2):
    if as_v2:
        data = carmod.PRAGMA_V2 + bytes(16) + (51).to_bytes(8, "little") + len(data).to_bytes(8, "little") + bytes(
            8) + data
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.car"
        path.write_bytes(data)
        store = core.blocks.BlockStore(Path(d) / "blocks")
        before = _fds()
        for source in (path, io.BytesIO(data)):
            try:
                report = carmod.import_car(source, store)
            except core.IpfsError as exc:
                assert isinstance(exc, carmod.CarError) and str(exc)
            else:
                assert all(isinstance(r, type(_blocks[0][0])) for r in report.roots)
                for r in report.roots:
                    core.cids.v1_base32(r)
        assert _fds() == before
