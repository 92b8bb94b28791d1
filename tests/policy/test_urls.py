"""URL resolution: WPT conformance as a registered scheme and as an unregistered one, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoreg.errors import InvalidURL
from protoreg.policy.origins import origin_of
from protoreg.policy.urls import resolve, resolve_href, scheme_of
from tests.conftest import conformance_cases

REG = frozenset({"web+foo"})
# Cases whose only difference is an empty query or fragment marker ("x?", "x#"), which a yarl.URL can't hold:
# resolve_href gets them exactly right; resolve's yarl.URL drops the empty marker. Listed in docs/urls.md.
YARL_EMPTY_MARKER = "yarl drops an empty '?' or '#'"
# The one case whose answer differs on purpose (docs/urls.md, Deviations): an empty Punycode label is InvalidURL.
EMPTY_PUNYCODE_DEVIATION = frozenset({"web+foo://xn--/"})


def _without_empty_markers(href: str) -> str:
    """What a yarl.URL can hold: no empty fragment marker, no empty query marker."""
    pre, sep, frag = href.partition("#")
    pre = pre.removesuffix("?")
    return pre + (sep + frag if frag else "")


def _case_id(case):
    return None if case is None else f"{case.get('wpt_index', '')}:{case['input']!r}"


@pytest.mark.conformance
@pytest.mark.parametrize("case", conformance_cases("wpt-url", "custom-scheme-candidates.json"), ids=_case_id)
def test_registered_scheme_resolves_exactly_like_https(case):
    if case["input"] in EMPTY_PUNYCODE_DEVIATION and case["base"] is None:
        with pytest.raises(InvalidURL, match="empty Punycode label"):
            resolve_href(case["input"], case["base"], registered=REG)
        return
    if case.get("failure"):
        with pytest.raises(InvalidURL):
            resolve_href(case["input"], case["base"], registered=REG)
        return
    href = resolve_href(case["input"], case["base"], registered=REG)
    assert href == case["href"]
    url = resolve(case["input"], case["base"], registered=REG)
    assert url.port is None
    assert (f"[{url.raw_host}]" if ":" in (url.raw_host or "") else url.raw_host) == case["hostname"]
    assert url.raw_path == case["pathname"]
    assert str(url) == _without_empty_markers(case["href"])
    if "origin" in case:
        assert origin_of(url, registered=REG).serialize() == case["origin"]


def _to_custom(text):
    return None if text is None else text.replace("https:", "web+foo:").replace("http:", "web+foo:")


@pytest.mark.conformance
@pytest.mark.parametrize("case", conformance_cases("wpt-url", "special-base-relative.json"), ids=_case_id)
def test_relative_references_resolve_against_a_registered_base_like_an_https_base(case):
    # As the http(s) scheme itself (unregistered: ada's own special handling) ...
    if case.get("failure"):
        with pytest.raises(InvalidURL):
            resolve_href(case["input"], case["base"])
        with pytest.raises(InvalidURL):
            resolve_href(_to_custom(case["input"]), _to_custom(case["base"]), registered=REG)
        return
    assert resolve_href(case["input"], case["base"]) == case["href"]
    # ... and as the registered scheme, where the only difference allowed is the stripped port.
    expected = _to_custom(case["href"])
    if case["port"]:
        expected = expected.replace(f":{case['port']}/", "/", 1)
    assert resolve_href(_to_custom(case["input"]), _to_custom(case["base"]), registered=REG) == expected


@pytest.mark.conformance
@pytest.mark.parametrize("case", conformance_cases("wpt-url", "nonspecial-scheme-cases.json"), ids=_case_id)
def test_unregistered_schemes_keep_whatwg_non_special_behaviour(case):
    if case.get("failure"):
        with pytest.raises(InvalidURL):
            resolve_href(case["input"], case["base"])
        return
    assert resolve_href(case["input"], case["base"]) == case["href"]
    if "origin" in case:
        url = resolve(case["input"], case["base"])
        assert origin_of(url).serialize() == case["origin"]


def test_port_is_stripped_from_registered_schemes_only():
    assert str(resolve("ipfs://cid:8080/x", registered={"ipfs"})) == "ipfs://cid/x"
    assert str(resolve("other://cid:8080/x", registered={"ipfs"})) == "other://cid:8080/x"


def test_invalid_port_is_still_an_error_for_registered_schemes():
    with pytest.raises(InvalidURL, match="not a valid URL"):
        resolve("web+foo://f:999999/c", registered=REG)


@pytest.mark.parametrize("text", ["ipfs://", "ipfs:///", "ipfs://?q", "ipfs:#f"])
def test_empty_host_raises_with_a_reason(text):
    with pytest.raises(InvalidURL, match="empty host"):
        resolve(text, registered={"ipfs"})


def test_extra_slashes_are_ignored_as_in_https():
    assert str(resolve("ipfs:///cid/x", registered={"ipfs"})) == "ipfs://cid/x"


def test_relative_reference_without_base_raises():
    with pytest.raises(InvalidURL, match="needs a base"):
        resolve("../a.png")


def test_relative_reference_resolves_against_a_registered_base_where_urljoin_cannot():
    from urllib.parse import urljoin

    assert urljoin("ipfs://cid/d/x.html", "../a.png") == "../a.png"  # why urljoin can't be the resolver
    assert str(resolve("../a.png", "ipfs://cid/d/x.html", registered={"ipfs"})) == "ipfs://cid/a.png"
    assert str(resolve("\\b\\..\\c?q#f", "ipfs://cid/d/x", registered={"ipfs"})) == "ipfs://cid/c?q#f"
    assert str(resolve("//other:7/x", "ipfs://cid/d/x", registered={"ipfs"})) == "ipfs://other/x"


def test_a_different_scheme_reference_ignores_the_base():
    assert str(resolve("https:foo", "ipfs://cid/", registered={"ipfs"})) == "https://foo/"
    assert str(resolve("web+b:host", "web+a://x/", registered={"web+a", "web+b"})) == "web+b://host/"


def test_bad_base_is_named_in_the_error():
    with pytest.raises(InvalidURL, match="its base is invalid"):
        resolve("x", "ipfs://", registered={"ipfs"})


def test_scheme_of():
    assert scheme_of("  IPFS://x") == "ipfs"
    assert scheme_of("/relative") is None


_url_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, h, p: f"{s}://{h}{p}", st.sampled_from(["web+foo", "ipfs", "WEB+FOO", "x-y", "https"]),
              st.text(alphabet="abc.-:[]%@0123456789", max_size=12), st.text(alphabet="/.\\?#%ab", max_size=12)),
)


@settings(max_examples=300, deadline=None)
@given(_url_text, st.one_of(st.none(), st.sampled_from(["web+foo://h/a/b", "ipfs://c/d", "https://x/y", "a:b"])))
def test_resolve_never_raises_anything_but_invalid_url(text, base):
    try:
        resolve(text, base, registered={"web+foo", "ipfs"})
    except InvalidURL:
        pass


@settings(max_examples=300, deadline=None)
@given(_url_text)
def test_resolved_urls_re_resolve_to_themselves_and_carry_no_port(text):
    try:
        url = resolve(text, "web+foo://h/a/b", registered={"web+foo", "ipfs"})
    except InvalidURL:
        return
    again = resolve(str(url), registered={"web+foo", "ipfs"})
    assert str(again) == str(url)
    if url.scheme in ("web+foo", "ipfs"):
        assert url.explicit_port is None


@pytest.mark.parametrize("url, base", [("web+foo://xn--/", None), ("web+foo://a.XN--/x", None),
                                       ("web+foo://user@xn--:8080/", None), ("//xn--/", "web+foo://a/"),
                                       ("web+foo://xn--.b/", None)])
def test_an_empty_punycode_label_in_a_registered_host_is_invalid_url(url, base):
    with pytest.raises(InvalidURL, match="empty Punycode label") as info:
        resolve(url, base, registered=REG)
    assert info.value.url == url
    with pytest.raises(InvalidURL):
        origin_of(url if base is None else "web+foo://xn--/", registered=REG)


def test_a_complete_punycode_label_still_resolves():
    assert resolve("web+foo://xn--9ca.xn--b/", registered=REG).raw_host == "xn--9ca.xn--b"
    assert resolve_href("https://xn--/") == "https://xn--/"  # WPT's answer for https, unchanged


def test_the_gateway_answers_an_empty_punycode_host_with_a_400_page():
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from protoreg import Registry
    from protoreg.gateway import create_app
    from tests.conftest import ROOT

    reg = Registry()
    reg.install(ROOT / "examples" / "hello-scheme")

    async def run():
        async with TestClient(TestServer(create_app(reg))) as client:
            resp = await client.get("/web+hello/xn--/", headers={"Host": "localhost:8080"},
                                    allow_redirects=False)
            return resp.status, await resp.text()

    status, text = asyncio.run(run())  # the label xn---- is the host xn-- ("--" stands for "-")
    assert status == 400 and "empty Punycode label" in text
