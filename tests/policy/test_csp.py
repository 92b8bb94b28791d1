"""CSP3 parsing and combination: conformance cases, the baseline, and "a handler can only tighten"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoreg.errors import InvalidPolicy
from protoreg.policy import csp
from tests.conftest import conformance_cases

BASELINE_TEXT = "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"


def shape(policies):
    return [([[name, values] for name, values in p.directives.items()], p.disposition, p.source)
            for p in policies]


@pytest.mark.conformance
@pytest.mark.parametrize("case", conformance_cases("csp", "csp-parse-cases.json"),
                         ids=lambda c: None if c is None else c["name"])
def test_csp_parse_conformance_case_gives_the_expected_policies_in_order(case):
    got = csp.parse_response_policies([(name, value) for name, value in case["headers"]])
    want = [(p["directives"], p["disposition"], p["source"]) for p in case["expected_policies"]]
    assert shape(got) == want


# --- parse a serialized CSP -----------------------------------------------------------------------

def test_parse_lowercases_names_keeps_order_and_first_duplicate_wins():
    p = csp.parse_serialized_policy("IMG-SRC a; Script-Src 'self' B;img-src c")
    assert list(p.directives.items()) == [("img-src", ["a"]), ("script-src", ["'self'", "B"])]


def test_parse_skips_non_ascii_tokens_and_keeps_the_rest():
    p = csp.parse_serialized_policy("img-src caf\u00e9.example; script-src 'none'")
    assert p.directives == {"script-src": ["'none'"]}


def test_parse_of_a_single_serialized_policy_does_not_split_on_commas():
    p = csp.parse_serialized_policy("script-src a, img-src b")
    assert p.directives == {"script-src": ["a,", "img-src", "b"]}


def test_parse_records_source_and_disposition():
    p = csp.parse_serialized_policy("img-src *", source="meta", disposition="report")
    assert (p.source, p.disposition) == ("meta", "report")


@pytest.mark.parametrize(("kwargs", "needle"), [({"disposition": "block"}, "disposition 'block'"),
                                                ({"source": "http"}, "source 'http'")])
def test_parse_rejects_unknown_disposition_or_source(kwargs, needle):
    with pytest.raises(InvalidPolicy, match=needle):
        csp.parse_serialized_policy("img-src *", **kwargs)


def test_vertical_tab_is_not_ascii_whitespace():
    p = csp.parse_serialized_policy("img-src a\x0bb")
    assert p.directives == {"img-src": ["a\x0bb"]}


# --- parse a response's policies ------------------------------------------------------------------

def test_enforced_policies_come_before_report_only_ones_whatever_the_header_order():
    policies = csp.parse_response_policies([("Content-Security-Policy-Report-Only", "img-src 'none'"),
                                            ("CONTENT-SECURITY-POLICY", "script-src 'self'"),
                                            ("X-Other", "script-src *")])
    assert [(p.serialize(), p.disposition) for p in policies] == [("script-src 'self'", "enforce"),
                                                                  ("img-src 'none'", "report")]


def test_response_headers_may_be_any_iterable_of_pairs():
    items = iter([("content-security-policy", "a b, c d")])
    assert [p.serialize() for p in csp.parse_response_policies(items)] == ["a b", "c d"]


# --- serialize ------------------------------------------------------------------------------------

def test_serialize_then_parse_is_identity():
    text = "default-src 'self' ipfs:; img-src * data:; script-src 'nonce-abc'; upgrade-insecure-requests"
    policy = csp.parse_serialized_policy(text)
    assert policy.serialize() == text
    assert str(policy) == text
    assert csp.parse_serialized_policy(policy.serialize()) == policy


def test_serialize_normalizes_whitespace_and_drops_duplicates():
    policy = csp.parse_serialized_policy("  img-src\ta\t\tb ;; img-src c;  ")
    assert policy.serialize() == "img-src a b"


# --- combination: baseline, extension, handler ----------------------------------------------------

def test_baseline_is_object_src_none_base_uri_self_frame_ancestors_self():
    assert csp.BASELINE.serialize() == BASELINE_TEXT
    assert csp.BASELINE.disposition == "enforce"


def test_response_policies_are_baseline_then_extension_then_handler():
    policies = csp.response_policies("default-src 'self'", [
        ("Content-Security-Policy-Report-Only", "img-src 'none'"),
        ("Content-Security-Policy", "script-src 'self'")])
    assert [(p.serialize(), p.disposition) for p in policies] == [
        (BASELINE_TEXT, "enforce"), ("default-src 'self'", "enforce"),
        ("script-src 'self'", "enforce"), ("img-src 'none'", "report")]


def test_without_extension_or_handler_policy_only_the_baseline_applies():
    assert [p.serialize() for p in csp.response_policies(None, [])] == [BASELINE_TEXT]
    no_csp = [("Content-Type", "text/html")]
    assert [p.serialize() for p in csp.response_policies("", no_csp)] == [BASELINE_TEXT]
    assert [p.serialize() for p in csp.response_policies(" ; ", [])] == [BASELINE_TEXT]


def test_baseline_and_extension_policy_survive_any_handler_header():
    handler_headers = [("Content-Security-Policy",
                        "default-src *; object-src *; frame-ancestors *; base-uri *")]
    policies = csp.response_policies("script-src 'self'", handler_headers)
    assert shape(policies[:2]) == [([["object-src", ["'none'"]], ["base-uri", ["'self'"]],
                                     ["frame-ancestors", ["'self'"]]], "enforce", "header"),
                                   ([["script-src", ["'self'"]]], "enforce", "header")]
    items = csp.csp_header_items(policies)
    assert items[:2] == [("Content-Security-Policy", BASELINE_TEXT),
                         ("Content-Security-Policy", "script-src 'self'")]
    # Every enforced policy applies, so the handler's `object-src *` can't loosen the baseline's 'none'.
    assert csp.effective_sources(policies, "object-src") == [["'none'"], None, ["*"]]
    assert csp.effective_sources(policies, "frame-ancestors") == [["'self'"], None, ["*"]]


def test_a_handler_header_item_that_is_empty_or_report_only_cannot_displace_the_baseline():
    policies = csp.response_policies(None, [("Content-Security-Policy", ""),
                                            ("Content-Security-Policy-Report-Only", "object-src *")])
    assert csp.effective_sources(policies, "object-src") == [["'none'"]]


def test_an_extension_policy_with_commas_becomes_several_policies_as_a_browser_reads_the_header():
    policies = csp.response_policies("default-src 'none', script-src *", [])
    assert [p.serialize() for p in policies[1:]] == ["default-src 'none'", "script-src *"]
    items = csp.csp_header_items(policies)
    assert shape(csp.parse_response_policies(items)) == shape(policies)


def test_response_policies_returns_fresh_objects_so_mutation_cannot_weaken_later_responses():
    first = csp.response_policies("script-src 'self'", [])
    first[0].directives.clear()
    first[1].directives["script-src"].append("*")
    csp.BASELINE.directives["object-src"] = ["*"]
    try:
        again = csp.response_policies("script-src 'self'", [])
    finally:
        csp.BASELINE.directives["object-src"] = ["'none'"]
    assert [p.serialize() for p in again] == [BASELINE_TEXT, "script-src 'self'"]


# --- header items ---------------------------------------------------------------------------------

def test_header_items_one_per_policy_with_the_disposition_header_name():
    policies = [csp.parse_serialized_policy("img-src a"), csp.Policy(),
                csp.parse_serialized_policy("script-src b", disposition="report")]
    assert csp.csp_header_items(policies) == [("Content-Security-Policy", "img-src a"),
                                              ("Content-Security-Policy-Report-Only", "script-src b")]


@pytest.mark.parametrize("directives", [
    {"img-src": ["a b"]}, {"img-src": ["a,b"]}, {"img-src": ["a;b"]}, {"img-src": [""]}, {"Img-Src": ["a"]},
    {"img-src": ["caf\u00e9"]}, {"img-src": ["a\r\nSet-Cookie: x"]}, {"": ["a"]},
])
def test_header_items_refuse_hand_built_policies_a_browser_would_read_differently(directives):
    with pytest.raises(InvalidPolicy, match="can't be sent as a header"):
        csp.csp_header_items([csp.Policy(directives)])


# --- effective directive and inline checks --------------------------------------------------------

@pytest.mark.parametrize(("directive", "expected"), [
    ("script-src-elem", ("script-src-elem", "script-src", "default-src")),
    ("script-src-attr", ("script-src-attr", "script-src", "default-src")),
    ("style-src-elem", ("style-src-elem", "style-src", "default-src")),
    ("worker-src", ("worker-src", "child-src", "script-src", "default-src")),
    ("frame-src", ("frame-src", "child-src", "default-src")),
    ("img-src", ("img-src", "default-src")),
    ("connect-src", ("connect-src", "default-src")),
    ("Font-Src", ("font-src", "default-src")),
    ("base-uri", ("base-uri",)),
    ("frame-ancestors", ("frame-ancestors",)),
])
def test_fallback_lists_follow_csp3(directive, expected):
    assert csp.fallback_list(directive) == expected


def test_effective_sources_use_the_first_present_directive_of_the_fallback_list():
    p = csp.parse_serialized_policy("default-src 'none'; script-src 'self'; child-src blob:")
    assert csp.effective_sources([p], "script-src-elem") == [["'self'"]]
    assert csp.effective_sources([p], "img-src") == [["'none'"]]
    assert csp.effective_sources([p], "worker-src") == [["blob:"]]
    assert csp.effective_sources([p], "base-uri") == [None]  # default-src does not cover base-uri
    assert csp.effective_sources([csp.parse_serialized_policy("img-src *")], "style-src-elem") == [None]


def test_effective_sources_skip_report_only_policies():
    policies = [csp.parse_serialized_policy("img-src a", disposition="report"),
                csp.parse_serialized_policy("x y")]
    assert csp.effective_sources(policies, "img-src") == [None]


def test_extension_may_allow_inline_scripts_and_a_handler_may_forbid_them():
    allowing = csp.response_policies("script-src 'self' 'unsafe-inline'", [])
    assert csp.allows_inline(allowing)
    tightened = csp.response_policies("script-src 'self' 'unsafe-inline'",
                                      [("Content-Security-Policy", "script-src 'self'")])
    assert not csp.allows_inline(tightened)


def test_the_baseline_alone_does_not_forbid_inline_scripts_or_styles():
    assert csp.allows_inline(csp.response_policies(None, []))
    assert csp.allows_inline(csp.response_policies(None, []), "style-src-attr")


def test_default_src_without_unsafe_inline_forbids_inline():
    assert not csp.allows_inline(csp.response_policies("default-src 'self'", []))
    assert csp.allows_inline(csp.response_policies("default-src 'self' 'UNSAFE-INLINE'", []))


@pytest.mark.parametrize(("sources", "allowed"), [
    ("'unsafe-inline' 'nonce-abc123'", False),
    ("'unsafe-inline' 'NONCE-abc123'", False),
    ("'unsafe-inline' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='", False),
    ("'unsafe-inline' 'sha512-abc'", False),
    ("'unsafe-inline' 'strict-dynamic'", False),
    ("'unsafe-inline' 'nonce-'", True),  # not a nonce-source: base64-value needs at least one character
    ("'unsafe-inline' 'sha1-abc'", True),  # not a hash-source: sha1 isn't an allowed algorithm
    ("'unsafe-inline' 'nonce-abc", True),  # no closing quote
    ("'self'", False),
    ("", False),  # an empty source list is 'none'
])
def test_nonces_and_hashes_cancel_unsafe_inline_only_when_well_formed(sources, allowed):
    assert csp.allows_inline([csp.parse_serialized_policy(f"script-src {sources}")]) is allowed


def test_strict_dynamic_cancels_unsafe_inline_for_scripts_but_not_styles():
    p = csp.parse_serialized_policy("default-src 'unsafe-inline' 'strict-dynamic'")
    assert not csp.allows_inline([p], "script-src-elem")
    assert not csp.allows_inline([p], "script-src-attr")
    assert csp.allows_inline([p], "style-src-elem")


def test_report_only_policies_are_not_enforced():
    policies = csp.parse_response_policies([("Content-Security-Policy-Report-Only", "script-src 'none'")])
    assert policies[0].disposition == "report"
    assert csp.allows_inline(policies)
    assert csp.csp_header_items(policies) == [("Content-Security-Policy-Report-Only", "script-src 'none'")]


# --- properties -----------------------------------------------------------------------------------

# Mostly the characters that matter to the parser (separators, ASCII and non-ASCII whitespace), plus any text.
PARSER_CHARS = "ab-*' ;,\t\n\f\r\x0bAZ:/\u00a0\u00e9\x00"
header_text = st.text(alphabet=st.sampled_from(list(PARSER_CHARS)), max_size=60) | st.text(max_size=60)
header_name = st.sampled_from(["Content-Security-Policy", "content-security-policy-report-only",
                               "CONTENT-SECURITY-POLICY", "X-Other"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(header_name, header_text), max_size=4))
def test_parse_never_raises_and_header_items_reparse_to_the_same_policies(headers):
    policies = csp.parse_response_policies(headers)
    assert all(p.directives for p in policies)
    assert shape(csp.parse_response_policies(csp.csp_header_items(policies))) == shape(policies)


@settings(max_examples=150, deadline=None)
@given(header_text, st.sampled_from(["enforce", "report"]), st.sampled_from(["header", "meta"]))
def test_serialize_then_parse_is_identity_on_parsed_policies(text, disposition, source):
    policy = csp.parse_serialized_policy(text, disposition=disposition, source=source)
    assert csp.parse_serialized_policy(policy.serialize(), disposition=disposition, source=source) == policy


@settings(max_examples=100, deadline=None)
@given(st.none() | header_text, st.lists(st.tuples(header_name, header_text), max_size=3))
def test_response_policies_always_start_with_the_baseline_and_never_loosen_it(extension, handler):
    policies = csp.response_policies(extension, handler)
    assert policies[0].serialize() == BASELINE_TEXT
    assert csp.effective_sources(policies, "object-src")[0] == ["'none'"]
    assert shape(csp.parse_response_policies(csp.csp_header_items(policies))) == shape(policies)
