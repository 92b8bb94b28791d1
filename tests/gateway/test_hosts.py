"""Subdomain label codec: a bijective host encoding, scheme labels, site labels, the 63-octet limit, Host parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from protoreg.gateway.hosts import (
    LabelTooLong,
    decode_host_label,
    decode_scheme_label,
    encode_host_label,
    encode_scheme_label,
    parse_host_header,
    site_label,
    to_gateway_url,
)

# What a WHATWG-parsed domain or IP host of a special URL may contain (lowercase ASCII, no forbidden points).
HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=[]:"


@pytest.mark.parametrize(("host", "label"), [
    ("bafkqaaa", "bafkqaaa"),
    ("my-site", "my-site"),
    ("my.site", "i--my-2esite"),
    ("a--b", "i--a-2d-2db"),
    ("en.wikipedia-on-ipfs.org", "i--en-2ewikipedia-2don-2dipfs-2eorg"),
    ("xn--bcher-kva", "i--xn-2d-2dbcher-2dkva"),
    ("127.0.0.1", "i--127-2e0-2e0-2e1"),
    ("[::1]", "i---5b-3a-3a1-5d"),
    ("-lead", "i---2dlead"),
])
def test_hosts_encode_to_one_label_and_decode_back(host, label):
    assert encode_host_label(host) == label
    assert decode_host_label(label) == host


def test_hosts_that_merged_before_now_get_distinct_labels():
    labels = {encode_host_label(h) for h in ("my-site", "my.site", "a--b", "a-b", "a.b", "a-.b")}
    assert len(labels) == 6


@given(st.text(alphabet=HOST_CHARS, min_size=1, max_size=40))
def test_the_encoding_is_injective_and_decodes_back(host):
    try:
        label = encode_host_label(host)
    except LabelTooLong:
        return
    assert decode_host_label(label) == host
    assert len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63))
def test_every_label_has_at_most_one_host_and_only_its_canonical_spelling_is_accepted(label):
    host = decode_host_label(label)
    if host is not None:
        assert encode_host_label(host) == label


@pytest.mark.parametrize("label", ["a--b", "i--", "i--A", "i---zz", "i--ab", "i---61", "-a", "a-", "x--y--z"])
def test_non_canonical_or_foreign_labels_decode_to_nothing(label):
    assert decode_host_label(label) is None


def test_label_over_63_characters_is_refused_with_an_explanation():
    with pytest.raises(LabelTooLong, match="over the 63-character limit"):
        encode_host_label("x" * 64)
    with pytest.raises(LabelTooLong):
        encode_host_label("a." * 16)


@pytest.mark.parametrize(("scheme", "label"), [("ipfs", "ipfs"), ("web+foo", "web-foo"), ("ext+bar", "ext-bar")])
def test_scheme_labels_are_reversible(scheme, label):
    assert encode_scheme_label(scheme) == label
    assert decode_scheme_label(label) == scheme


def test_non_scheme_labels_are_rejected():
    assert decode_scheme_label("web-") is None
    assert decode_scheme_label("a1") is None


def test_site_labels_differ_per_scheme_host_and_owner():
    base = site_label("a@x", "web+a", "h")
    assert len(base) == 25 and base.startswith("s")
    assert len({base, site_label("a@x", "web+b", "h"), site_label("a@x", "web+a", "g"),
                site_label("b@x", "web+a", "h")}) == 4


@pytest.mark.parametrize(("header", "scheme", "host", "authority", "site"), [
    ("bafy.ipfs.localhost:8080", "ipfs", "bafy", "localhost:8080", None),
    ("a.web-foo.sabcdefghijklmnopqrstuvwx.localhost:8080", "web+foo", "a", "localhost:8080",
     "sabcdefghijklmnopqrstuvwx"),
    ("i--en-2ewikipedia-2don-2dipfs-2eorg.ipns.localhost", "ipns", "en.wikipedia-on-ipfs.org", "localhost", None),
    ("localhost:8080", None, None, "localhost:8080", None),
    ("LOCALHOST:8080", None, None, "localhost:8080", None),
])
def test_host_headers_address_origins_or_the_dashboard(header, scheme, host, authority, site):
    target = parse_host_header(header)
    assert target is not None
    assert (target.scheme, target.host, target.authority, target.site) == (scheme, host, authority, site)


@pytest.mark.parametrize("header", ["", "evil.example", "a.b.c.localhost", "x/y.ipfs.localhost",
                                    "a.ipfs.localhost:80x", "a.web+foo.localhost", "a.ipfs.localhost.:8080",
                                    "a.ipfs.localhost:65536", "a.ipfs.localhost:99999999999", "a--b.ipfs.localhost",
                                    "a.ipfs.notasitelabel.localhost"])
def test_foreign_or_malformed_host_headers_are_not_ours(header):
    assert parse_host_header(header) is None


def test_custom_urls_map_to_gateway_urls_keeping_path_query_and_fragment():
    url = URL("web+foo://docs.example.org/a%20b/c?x=1#frag", encoded=True)
    site = site_label("foo@test", "web+foo", "docs.example.org")
    assert str(to_gateway_url(url, "localhost:8080", "foo@test")) == \
        f"http://i--docs-2eexample-2eorg.web-foo.{site}.localhost:8080/a%20b/c?x=1#frag"
