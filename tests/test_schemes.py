"""Scheme rules: the browsers' safelist, web+/ext+ names, and schemes that can never be claimed."""

from __future__ import annotations

import pytest

from protoreg.schemes import FORBIDDEN, SAFELIST, check_scheme


@pytest.mark.parametrize("scheme", sorted(SAFELIST) + ["web+foo", "ext+bar", "web+a"])
def test_safelisted_and_prefixed_schemes_can_be_claimed(scheme):
    assert check_scheme(scheme) is None


@pytest.mark.parametrize("scheme", ["http", "https", "file", "data", "blob", "javascript", "about", "ws", "wss"])
def test_built_in_schemes_can_never_be_claimed(scheme):
    assert scheme in FORBIDDEN
    assert "can never be claimed" in check_scheme(scheme)


@pytest.mark.parametrize(("scheme", "needle"), [
    ("IPFS", "must be lowercase: use 'ipfs'"),
    ("web+", "at least one"),
    ("web+foo1", "only contain lowercase ASCII letters"),
    ("web+Foo", "must be lowercase"),
    ("web+foo-bar", "only contain lowercase"),
    ("foo", "safelist"),
    ("ext+", "at least one"),
    (3, "must be a string"),
])
def test_invalid_schemes_are_explained(scheme, needle):
    assert needle in check_scheme(scheme)
