"""Origins: tuple origins for registered schemes (no port), WHATWG origins otherwise, opaque ones never same."""

from __future__ import annotations

from protoreg.policy.origins import Origin, origin_of

REG = {"ipfs", "web+foo"}


def test_registered_scheme_origin_is_scheme_and_host_without_port():
    o = origin_of("ipfs://CID.example:8080/x/y", registered=REG)
    assert (o.scheme, o.host, o.port, o.is_opaque) == ("ipfs", "cid.example", None, False)
    assert o.serialize() == "ipfs://cid.example"


def test_two_hosts_of_one_scheme_are_cross_origin_and_paths_do_not_matter():
    a1, a2, b = (origin_of(u, registered=REG) for u in ("web+foo://a/1", "web+foo://a/2?q", "web+foo://b/1"))
    assert a1.same_origin(a2)
    assert not a1.same_origin(b)


def test_same_host_under_two_schemes_is_cross_origin():
    assert not origin_of("ipfs://x/", registered=REG).same_origin(origin_of("web+foo://x/", registered=REG))


def test_http_origins_keep_non_default_ports():
    assert origin_of("https://a.example:8443/p").serialize() == "https://a.example:8443"
    assert origin_of("https://a.example:443/p").serialize() == "https://a.example"
    assert origin_of("http://[::1]:8080/").serialize() == "http://[::1]:8080"


def test_unregistered_and_local_schemes_are_opaque_and_never_same_origin_even_with_themselves():
    for url in ("foo://x/", "data:text/plain,hi", "about:blank", "file:///etc/passwd", "mailto:a@b"):
        o = origin_of(url, registered=REG)
        assert o.is_opaque and o.serialize() == "null"
        assert not o.same_origin(o)


def test_blob_takes_the_origin_of_its_http_inner_url():
    assert origin_of("blob:https://a.example/uuid").serialize() == "https://a.example"
    assert origin_of("blob:ftp://a.example/uuid").is_opaque


def test_opaque_origins_are_distinct_dict_keys():
    a, b = Origin.opaque(), Origin.opaque()
    assert a != b and a == a
    assert len({a, b, Origin.tuple("ipfs", "x"), Origin.tuple("ipfs", "x")}) == 3
