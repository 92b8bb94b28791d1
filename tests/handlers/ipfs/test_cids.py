"""CID parsing in every form a gateway meets, with errors that say what is wrong."""

from __future__ import annotations

import pytest
from multiformats import CID, multihash

from tests.handlers.ipfs.conftest import core

cids = core.cids
V0 = "QmYiPNLU7Hc739sqcBH5DgVmk5mKTQVzKSqvJJeNGWTgrE"
V1 = "bafybeie2ezgriv3qzmw3k7lurysjr7rbky4dahjwtz3mt6ci67qid2kjum"


def test_v0_base32_base36_and_base58_forms_parse_to_the_same_multihash():
    v1 = cids.parse_cid(V1)
    forms = [V0, V1, str(v1.set(base="base36")), str(v1.set(base="base58btc"))]
    parsed = [cids.parse_cid(f) for f in forms]
    assert {bytes(c.digest) for c in parsed} == {bytes(v1.digest)}
    assert parsed[0].version == 0 and all(c.version == 1 for c in parsed[1:])
    assert {cids.v1_base32(c) for c in parsed} == {V1}


@pytest.mark.parametrize("codec", ["raw", "dag-pb", "dag-cbor", "dag-json"])
def test_the_supported_codecs_parse(codec):
    text = str(CID("base32", 1, codec, multihash.digest(b"x", "sha2-256")))
    assert cids.parse_cid(text).codec.name == codec


def test_an_unsupported_codec_is_refused_naming_the_supported_ones():
    text = str(CID("base32", 1, "git-raw", multihash.digest(b"x", "sha1")))
    with pytest.raises(core.InvalidCID, match=r"uses the codec git-raw.*dag-pb"):
        cids.parse_cid(text)


@pytest.mark.parametrize("text", ["", "bafyNOPE", "zzzz", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2dev"])
def test_garbage_is_an_invalid_cid_saying_it_is_not_valid(text):
    with pytest.raises(core.InvalidCID, match="is not a valid CID"):
        cids.parse_cid(text)


def test_a_lowercased_cidv0_gets_a_hint_about_the_base32_form():
    with pytest.raises(core.InvalidCID, match="use its CIDv1 base32 form"):
        cids.parse_cid(V0.lower())


def test_invalid_cid_is_an_ipfs_error_with_http_status_400():
    assert issubclass(core.InvalidCID, core.IpfsError) and core.InvalidCID.status == 400


def test_identity_cids_are_recognised_and_verify_against_their_inline_bytes():
    cid = CID("base32", 1, "raw", multihash.digest(b"inline", "identity"))
    assert cids.is_identity(cid) and not cids.is_identity(cids.raw_cid(b"inline"))
    assert cids.verify(cid, b"inline") == b"inline"
    with pytest.raises(core.CorruptBlock):
        cids.verify(cid, b"other")
