"""Subdomain label codec: inlining, scheme labels, the 63-octet limit, Host header parsing."""

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
    to_gateway_url,
)


@pytest.mark.parametrize(("host", "label"), [
    ("bafkqaaa", "bafkqaaa"),
    ("en.wikipedia-on-ipfs.org", "en-wikipedia--on--ipfs-org"),
    ("a-b.c", "a--b-c"),
    ("docs.ipfs.tech", "docs-ipfs-tech"),
])
def test_hosts_are_inlined_with_the_dnslink_rule_and_decoded_back(host, label):
    assert encode_host_label(host) == label
    assert decode_host_label(label) == host


def test_a_single_label_host_with_a_dash_is_kept_as_is():
    assert encode_host_label("my-site") == "my-site"


@given(st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=2, max_size=4))
def test_inlining_round_trips_for_multi_label_hosts(labels):
    host = ".".join(labels)
    if "--" in host or len(host.replace("-", "--").replace(".", "-")) > 63:
        return
    assert decode_host_label(encode_host_label(host)) == host


def test_label_over_63_characters_is_refused_with_an_explanation():
    with pytest.raises(LabelTooLong, match="over the 63-character limit"):
        encode_host_label("x" * 64)


@pytest.mark.parametrize(("scheme", "label"), [("ipfs", "ipfs"), ("web+foo", "web-foo"), ("ext+bar", "ext-bar")])
def test_scheme_labels_are_reversible(scheme, label):
    assert encode_scheme_label(scheme) == label
    assert decode_scheme_label(label) == scheme


def test_non_scheme_labels_are_rejected():
    assert decode_scheme_label("web-") is None
    assert decode_scheme_label("a1") is None


@pytest.mark.parametrize(("header", "scheme", "host", "authority"), [
    ("bafy.ipfs.localhost:8080", "ipfs", "bafy", "localhost:8080"),
    ("a.web-foo.localhost:8080", "web+foo", "a", "localhost:8080"),
    ("en-wikipedia--on--ipfs-org.ipns.localhost", "ipns", "en.wikipedia-on-ipfs.org", "localhost"),
    ("localhost:8080", None, None, "localhost:8080"),
    ("LOCALHOST:8080", None, None, "localhost:8080"),
])
def test_host_headers_address_origins_or_the_dashboard(header, scheme, host, authority):
    target = parse_host_header(header)
    assert target is not None
    assert (target.scheme, target.host, target.authority) == (scheme, host, authority)


@pytest.mark.parametrize("header", ["", "evil.example", "a.b.c.localhost", "x/y.ipfs.localhost",
                                    "a.ipfs.localhost:80x", "a.web+foo.localhost"])
def test_foreign_or_malformed_host_headers_are_not_ours(header):
    assert parse_host_header(header) is None


def test_custom_urls_map_to_gateway_urls_keeping_path_query_and_fragment():
    url = URL("web+foo://docs.example.org/a%20b/c?x=1#frag", encoded=True)
    assert str(to_gateway_url(url, "localhost:8080")) == \
        "http://docs-example-org.web-foo.localhost:8080/a%20b/c?x=1#frag"
