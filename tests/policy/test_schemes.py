"""Scheme rules: the browsers' safelist, web+/ext+ names, and schemes that can never be claimed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoreg.policy.schemes import FORBIDDEN, SAFELIST, check_scheme

HTML_SAFELIST = {"bitcoin", "dat", "dweb", "ftp", "geo", "gopher", "im", "ipfs", "ipns", "irc", "ircs", "magnet",
                 "mailto", "matrix", "mms", "news", "nntp", "sip", "sms", "smsto", "ssb", "ssh", "tel", "urn",
                 "webcal", "wtai", "xmpp"}


def test_the_safelist_is_exactly_the_browsers_list():
    assert set(SAFELIST) == HTML_SAFELIST


@pytest.mark.parametrize("scheme", sorted(HTML_SAFELIST))
def test_every_safelisted_scheme_can_be_claimed(scheme):
    assert check_scheme(scheme) is None


@pytest.mark.parametrize("scheme", ["web+foo", "ext+bar", "web+a", "ext+z", "web+abcdefghijklmnopqrstuvwxyz"])
def test_web_and_ext_prefixed_lowercase_names_can_be_claimed(scheme):
    assert check_scheme(scheme) is None


def test_ftp_is_claimable_because_it_is_safelisted_and_not_forbidden():
    assert "ftp" not in FORBIDDEN
    assert check_scheme("ftp") is None


@pytest.mark.parametrize("scheme", ["http", "https", "file", "data", "blob", "javascript", "about", "ws", "wss",
                                    "filesystem", "chrome", "resource", "moz-extension", "chrome-extension"])
def test_built_in_schemes_can_never_be_claimed(scheme):
    assert scheme in FORBIDDEN
    message = check_scheme(scheme)
    assert "can never be claimed" in message and "web+" in message


def test_forbidden_and_safelisted_sets_do_not_overlap():
    assert not FORBIDDEN & SAFELIST


@pytest.mark.parametrize(("scheme", "needle"), [
    ("IPFS", "must be lowercase: use 'ipfs'"),
    ("Web+Foo", "must be lowercase: use 'web+foo'"),
    ("web+Foo", "must be lowercase: use 'web+foo'"),
    ("EXT+bar", "must be lowercase: use 'ext+bar'"),
])
def test_uppercase_is_rejected_with_the_lowercase_form_to_use(scheme, needle):
    assert needle in check_scheme(scheme)


@pytest.mark.parametrize(("scheme", "fix"), [
    ("web+foo1", "'web+foo'"), ("web+1", "'web+name'"), ("web+foo-bar", "'web+foobar'"), ("ext+a.b", "'ext+ab'"),
    ("web+é", "'web+name'"), ("web+foo bar", "'web+foobar'"),
])
def test_digits_and_punctuation_after_the_prefix_are_rejected_with_a_fixed_name(scheme, fix):
    message = check_scheme(scheme)
    assert "only contain lowercase ASCII letters" in message and fix in message


@pytest.mark.parametrize("scheme", ["web+", "ext+"])
def test_a_bare_prefix_needs_at_least_one_letter(scheme):
    assert "at least one" in check_scheme(scheme)


@pytest.mark.parametrize("scheme", ["foo", "web", "webfoo", "web-foo", "x+foo", "", "ipfs:", "ssh2", "bitcoins"])
def test_other_names_point_at_the_safelist_and_a_web_name(scheme):
    message = check_scheme(scheme)
    assert "safelist" in message and "'web+" in message


@pytest.mark.parametrize("scheme", [3, None, b"ipfs", ["ipfs"]])
def test_non_strings_are_rejected(scheme):
    assert "must be a string" in check_scheme(scheme)


_RULE = re.compile(r"(?:web|ext)\+[a-z]+")


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=12), st.from_regex(r"(web|ext|WEB)\+[a-zA-Z0-9\-.]{0,6}", fullmatch=True),
                 st.sampled_from(sorted(SAFELIST | FORBIDDEN))))
def test_check_scheme_accepts_exactly_the_safelist_and_prefixed_letters(scheme):
    allowed = scheme in SAFELIST or bool(_RULE.fullmatch(scheme))
    result = check_scheme(scheme)
    assert (result is None) == allowed
    if result is not None:
        assert result and ("use" in result or "e.g." in result)  # every refusal says what to use instead
