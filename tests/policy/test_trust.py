"""Secure Contexts: "potentially trustworthy" per the W3C algorithm, with uriIsTrustworthy schemes authenticated."""

from __future__ import annotations

import pytest

from protoreg.errors import InvalidURL
from protoreg.policy.origins import origin_of
from protoreg.policy.trust import is_potentially_trustworthy, is_secure_context
from tests.conftest import conformance_cases

CASES = conformance_cases("secure-contexts", "trustworthy-cases.json", where=lambda c: not c.get("divergence"))


def _expected(case) -> bool | None:
    exp = case["spec_expected"]
    if exp == "Not Trustworthy":
        return False
    if exp.startswith(("Potentially Trustworthy", "UA-defined")):
        # "UA-defined": file: URLs; we follow Chromium and Firefox (trustworthy). "Potentially Trustworthy?":
        # about:blank with a query or fragment; we follow Chromium (trustworthy). Both in docs/urls.md.
        return True
    return None  # "N/A: WHATWG URL parse failure"


@pytest.mark.conformance
@pytest.mark.parametrize("case", CASES, ids=lambda c: None if c is None else f"{c['algorithm']}:{c['input']}")
def test_secure_contexts_conformance(case):
    expected = _expected(case)
    if expected is None:
        with pytest.raises(InvalidURL):
            is_potentially_trustworthy(case["input"])
        return
    if case["algorithm"] == "origin":
        origin = origin_of(case["input"])
        assert origin.serialize() == case["whatwg_origin"]
        target = case["input"] if case["input"].startswith("file:") else origin
    else:
        target = case["input"]
    assert is_potentially_trustworthy(target) is expected


def test_registered_scheme_is_trustworthy_only_when_its_manifest_says_so():
    reg = {"ipfs", "web+foo"}
    assert is_potentially_trustworthy("ipfs://cid/", registered=reg, trustworthy_schemes={"ipfs"})
    assert not is_potentially_trustworthy("web+foo://x/", registered=reg, trustworthy_schemes={"ipfs"})
    assert not is_potentially_trustworthy("ipfs://cid/", registered=reg)


def test_gateway_subdomains_of_localhost_are_trustworthy():
    assert is_potentially_trustworthy("http://bafy.ipfs.localhost:8080/")


def test_secure_context_needs_every_ancestor_trustworthy():
    kw = {"registered": {"ipfs"}, "trustworthy_schemes": {"ipfs"}}
    assert is_secure_context(["ipfs://a/", "https://top.example/"], **kw)
    assert not is_secure_context(["ipfs://a/", "http://top.example/"], **kw)
    with pytest.raises(ValueError, match="at least"):
        is_secure_context([], **kw)
