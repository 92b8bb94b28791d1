"""Fuzz target: CID parsing (the ipfs:// host). Only InvalidCID may escape; an accepted CID is fully usable."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.ipfs.helpers import ipfs_core

core = ipfs_core()
EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
GOOD = "bafybeiehzcdqt64eazfys6elphrh36ssdl2mfg3jmxvkru7zgrfeto57dq"


def _use(cid) -> None:
    core.cids.v1_base32(cid)
    core.cids.is_identity(cid)
    core.cids.digest_matches(cid, b"")


@FUZZ
@given(st.one_of(st.text(max_size=80), st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", max_size=70).map(
    lambda s: "b" + s), st.builds(lambda i, c: GOOD[:i] + c + GOOD[i + 1:], st.integers(0, len(GOOD) - 1),
                                  st.characters())))
def test_cid_text_raises_only_invalid_cid(text):
    try:
        cid = core.cids.parse_cid(text)
    except core.InvalidCID as exc:
        assert str(exc)
    else:
        _use(cid)


@FUZZ
@given(st.one_of(st.binary(max_size=80), st.builds(lambda codec, fn, n, d: bytes([1]) + core.dagpb.varint(codec)
                                                   + core.dagpb.varint(fn) + core.dagpb.varint(n) + d,
                                                   st.sampled_from([0x55, 0x70, 0x71, 0x0129, 0x99]),
                                                   st.sampled_from([0x00, 0x12, 0x13, 0x1B, 0xB220, 0x22, 0x77]),
                                                   st.integers(0, 80), st.binary(max_size=80))))
def test_binary_cids_raise_only_invalid_cid(raw):
    try:
        cid = core.cids.parse_cid(raw)
    except core.InvalidCID:
        return
    try:
        _use(cid)
    except core.CorruptBlock:  # a hash function multiformats can't compute: refused when a block is checked
        pass
