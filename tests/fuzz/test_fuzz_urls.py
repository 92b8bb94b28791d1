"""Fuzz target: URL resolution, origins and trust. Only InvalidURL may escape; a resolved URL is fully usable."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.errors import InvalidURL
from protoreg.policy.origins import origin_of
from protoreg.policy.trust import is_potentially_trustworthy, is_secure_context
from protoreg.policy.urls import resolve, resolve_href, scheme_of

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
REG = frozenset({"web+foo", "ipfs"})
_parts = st.sampled_from(["web+foo:", "ipfs:", "https:", "blob:", "data:", "x:", "//", "/", "\\", ":", "@", "?", "#",
                          "[", "]", "::1", "%", "%2e", ".", "..", "xn--", "XN--9ca", "a", "é", "\u200b", "\ud800",
                          "\x00", " ", "\t", "1.2.3.4", "0x7f.1", ":8080", "localhost", "💩", "ß", "-"])
_urls = st.one_of(st.text(max_size=40), st.lists(_parts | st.text(max_size=3), max_size=10).map("".join))


def _use(url, href: str) -> None:
    str(url)
    url.raw_host, url.raw_path, url.query_string  # noqa: B018 - touching every part is the point
    origin_of(url, registered=REG).serialize()
    assert isinstance(href, str)


@FUZZ
@given(_urls, st.none() | _urls)
def test_resolve_raises_only_invalid_url(url, base):
    scheme_of(url)
    try:
        href = resolve_href(url, base, registered=REG)
        parsed = resolve(url, base, registered=REG)
    except InvalidURL as exc:
        assert exc.url == url and str(exc)
        return
    _use(parsed, href)
    if parsed.scheme in REG:
        assert parsed.port is None and parsed.raw_host


@FUZZ
@given(_urls)
def test_origin_and_trust_raise_only_invalid_url(url):
    try:
        origin = origin_of(url, registered=REG)
    except InvalidURL:
        return
    origin.serialize()
    origin == origin  # noqa: B015 - equality must not raise, opaque or not
    try:
        is_potentially_trustworthy(url, trustworthy_schemes=frozenset({"ipfs"}), registered=REG)
        is_secure_context([url, origin], registered=REG)
    except InvalidURL:
        pass
