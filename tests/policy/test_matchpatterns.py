"""WebExtension match patterns: parsing, matching (ports, paths with no glob but ``*``) and ceiling coverage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from protoreg import InvalidPattern, ProtoregError
from protoreg.policy.matchpatterns import parse_pattern, pattern_problem


@pytest.mark.parametrize(("pattern", "url", "expected"), [
    ("<all_urls>", "https://a.example/x", True),
    ("<all_urls>", "wss://a.example/x", True),
    ("<all_urls>", "ipfs://bafy/x", False),
    ("*://*/*", "http://a.example/", True),
    ("*://*/*", "ws://a.example/", True),
    ("*://*/*", "ftp://a.example/", False),
    ("https://*.example.org/*", "https://example.org/", True),
    ("https://*.example.org/*", "https://a.b.example.org/x", True),
    ("https://*.example.org/*", "https://badexample.org/", False),
    ("https://*.example.org/*", "http://example.org/", False),
    ("https://EXAMPLE.org/*", "https://example.org/", True),
    ("https://example.org/a*", "https://example.org/abc?q=1", True),
    ("https://example.org/a*", "https://example.org/b", False),
    ("https://example.org/a*z", "https://example.org/a/b/z", True),
    ("ipfs://*/*", "ipfs://bafy/x", True),
])
def test_matches(pattern, url, expected):
    assert parse_pattern(pattern).matches(URL(url)) is expected


# A port in the pattern restricts it to that port (Chrome: "match all ports unless a port is explicitly specified").
# Before, the port was parsed and ignored: a grant for one local service reached every port of the host.
@pytest.mark.parametrize(("pattern", "url", "expected"), [
    ("http://127.0.0.1:8080/*", "http://127.0.0.1:8080/x", True),
    ("http://127.0.0.1:8080/*", "http://127.0.0.1:22/x", False),
    ("http://127.0.0.1:8080/*", "http://127.0.0.1/x", False),
    ("http://127.0.0.1:80/*", "http://127.0.0.1/x", True),  # the default port is the URL's port
    ("https://example.org:443/*", "https://example.org/", True),
    ("http://127.0.0.1/*", "http://127.0.0.1:22/x", True),
    ("http://127.0.0.1:*/*", "http://127.0.0.1:22/x", True),
])
def test_a_port_in_the_pattern_restricts_it(pattern, url, expected):
    assert parse_pattern(pattern).matches(URL(url)) is expected


# Only "*" is a wildcard in a match pattern's path: "?" and "[...]" are the characters themselves (fnmatch treated
# them as one-character and class wildcards, so "/v1?" matched "/v12").
@pytest.mark.parametrize(("pattern", "url", "expected"), [
    ("https://x.example/v1?", "https://x.example/v12", False),
    ("https://x.example/[ab]", "https://x.example/a", False),
    ("https://x.example/[ab]", "https://x.example/%5Bab%5D", False),
    ("https://x.example/a.b", "https://x.example/aXb", False),
    ("https://x.example/*?q=1", "https://x.example/p?q=1", True),
])
def test_only_the_star_is_a_wildcard_in_paths(pattern, url, expected):
    assert parse_pattern(pattern).matches(URL(url)) is expected


@pytest.mark.parametrize(("text", "why"), [
    ("example.org", "has no '://'"),
    ("HTTPS://example.org/*", "invalid scheme"),
    ("https://example.org", "has no path"),
    ("https:///*", "has no host"),
    ("https://a.*.org/*", "'*' may only be the whole host or its first label"),
    ("https://exa mple.org/*", "invalid host"),
    ("https://example.org:70000/*", "above 65535"),
    ("https://example.org/a\nb", "control character"),
])
def test_bad_patterns_raise_a_typed_error_saying_what_and_how(text, why):
    with pytest.raises(InvalidPattern) as info:
        parse_pattern(text)
    assert isinstance(info.value, ProtoregError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert why in message and repr(text) in message
    assert "; " in message  # the fix follows the problem


@pytest.mark.parametrize(("ceiling", "wanted", "expected"), [
    ("<all_urls>", "https://a.example/*", True),
    ("*://*/*", "<all_urls>", True),
    ("https://*/*", "<all_urls>", False),
    ("https://*.example.org/*", "https://a.example.org/*", True),
    ("https://*.example.org/*", "https://*.a.example.org/*", True),
    ("https://a.example.org/*", "https://*.example.org/*", False),
    ("https://example.org/*", "https://example.org/a/*", True),
    ("https://example.org/a/*", "https://example.org/*", False),
    ("https://example.org/a?", "https://example.org/ab", False),
    # ports: a ceiling naming a port covers only that port; no port (or "*") covers any
    ("http://127.0.0.1/*", "http://127.0.0.1:8080/*", True),
    ("http://127.0.0.1:8080/*", "http://127.0.0.1:8080/*", True),
    ("http://127.0.0.1:8080/*", "http://127.0.0.1/*", False),
    ("http://127.0.0.1:8080/*", "http://127.0.0.1:9090/*", False),
])
def test_covers_is_conservative(ceiling, wanted, expected):
    assert parse_pattern(ceiling).covers(parse_pattern(wanted)) is expected


_URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "ws", "ipfs"]),
    st.sampled_from(["example.org", "a.example.org", "127.0.0.1", "other.test"]),
    st.sampled_from(["", ":8080", ":80", ":443"]),
    st.text(alphabet="ab?[]*.%/", max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40), _URLS)
def test_any_text_parses_or_raises_invalid_pattern_and_matching_never_raises(text, url):
    problem = pattern_problem(text)
    try:
        pattern = parse_pattern(text)
    except InvalidPattern as exc:
        assert problem is not None and problem[0] in str(exc)
        return
    assert problem is None
    try:
        target = URL(url)
    except ValueError:
        return
    assert pattern.matches(target) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["http://example.org", "http://*.example.org", "http://*", "http://127.0.0.1:8080"]),
       st.sampled_from(["http://example.org", "http://a.example.org", "http://127.0.0.1:8080", "http://127.0.0.1"]),
       st.text(alphabet="ab*?", max_size=5), st.text(alphabet="ab/", max_size=5))
def test_a_covered_pattern_matches_only_urls_its_ceiling_matches(ceiling, wanted, cpath, wpath):
    c, w = parse_pattern(f"{ceiling}/{cpath}"), parse_pattern(f"{wanted}/{wpath}")
    if c.covers(w):  # w has no "*" in its path, so it matches exactly the URL it spells
        url = URL(f"{wanted}/{wpath}")
        assert w.matches(url) and c.matches(url)
