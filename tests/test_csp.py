"""CSP3 parsing and combination: conformance cases, the baseline, and "a handler can only tighten"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoreg import csp
from tests.conftest import conformance_cases


@pytest.mark.conformance
@pytest.mark.parametrize("case", conformance_cases("csp", "csp-parse-cases.json"),
                         ids=lambda c: None if c is None else c["name"])
def test_csp_parse_conformance(case):
    got = csp.parse_response_policies([tuple(h) for h in case["headers"]])
    want = case["expected_policies"]
    assert [[[n, v] for n, v in p.directives.items()] for p in got] == [p["directives"] for p in want]
    assert [p.disposition for p in got] == [p["disposition"] for p in want]
    assert [p.source for p in got] == [p["source"] for p in want]


def test_serialize_then_parse_is_identity():
    text = "default-src 'self' ipfs:; img-src * data:; script-src 'nonce-abc'"
    policy = csp.parse_serialized_policy(text)
    assert csp.parse_serialized_policy(policy.serialize()) == policy
    assert policy.serialize() == text


def test_baseline_and_extension_policy_survive_any_handler_header():
    handler_headers = [("Content-Security-Policy", "default-src *; object-src *; frame-ancestors *")]
    policies = csp.response_policies("script-src 'self'", handler_headers)
    assert policies[0].directives == csp.BASELINE.directives
    assert policies[1].directives == {"script-src": ["'self'"]}
    assert len(policies) == 3
    items = csp.csp_header_items(policies)
    assert items[0] == ("Content-Security-Policy", "object-src 'none'; base-uri 'self'; frame-ancestors 'self'")
    effective = csp.effective_sources(policies, "object-src")
    assert effective == [["'none'"], None, ["*"]]  # the handler's object-src * can't loosen the baseline's 'none'


def test_extension_may_allow_inline_scripts_and_a_handler_may_forbid_them():
    allowing = csp.response_policies("script-src 'self' 'unsafe-inline'", [])
    assert csp.allows_inline(allowing)
    tightened = csp.response_policies("script-src 'self' 'unsafe-inline'",
                                      [("Content-Security-Policy", "script-src 'self'")])
    assert not csp.allows_inline(tightened)
    assert not csp.allows_inline(csp.response_policies("default-src 'self'", []))
    assert csp.allows_inline(csp.response_policies(None, []))  # the baseline alone does not forbid inline


def test_a_nonce_cancels_unsafe_inline():
    assert not csp.allows_inline([csp.parse_serialized_policy("script-src 'unsafe-inline' 'nonce-x'")])


def test_fallback_lists_follow_csp3():
    p = csp.parse_serialized_policy("default-src 'none'; script-src 'self'")
    assert csp.effective_sources([p], "script-src-elem") == [["'self'"]]
    assert csp.effective_sources([p], "img-src") == [["'none'"]]
    assert csp.effective_sources([csp.parse_serialized_policy("img-src *")], "style-src") == [None]


def test_report_only_policies_are_not_enforced():
    policies = csp.parse_response_policies([("Content-Security-Policy-Report-Only", "script-src 'none'")])
    assert policies[0].disposition == "report"
    assert csp.allows_inline(policies)
    assert csp.csp_header_items(policies) == [("Content-Security-Policy-Report-Only", "script-src 'none'")]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parse_never_raises_and_reparses_to_the_same_policy(text):
    for policy in csp.parse_response_policies([("Content-Security-Policy", text)]):
        assert csp.parse_serialized_policy(policy.serialize()).directives == policy.directives
