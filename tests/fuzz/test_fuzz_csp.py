"""Fuzz target: CSP parsing and serialization (protoreg.policy.csp). Parsing never raises; serialization raises only
InvalidPolicy; what is sent parses back to the same directives."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.errors import InvalidPolicy
from protoreg.policy.csp import (
    allows_inline,
    csp_header_items,
    effective_sources,
    parse_response_policies,
    parse_serialized_policy,
    response_policies,
)

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
_parts = st.sampled_from(["default-src", "script-src", "script-src-elem", "style-src", "'self'", "'none'",
                          "'unsafe-inline'", "'nonce-abc'", "'sha256-x'", "'strict-dynamic'", "*", "https:", ";",
                          ",", " ", "\t", "\n", "\x0c", "é", "\x00", "report-uri", "sandbox", "DEFAULT-SRC"])
_policy_text = st.one_of(st.text(max_size=60), st.lists(_parts | st.text(max_size=4), max_size=14).map(" ".join))
_headers = st.lists(st.tuples(st.sampled_from(["Content-Security-Policy", "content-security-policy-report-only",
                                               "CONTENT-SECURITY-POLICY", "X-Other"]), _policy_text), max_size=4)


@FUZZ
@given(_policy_text)
def test_parse_serialized_policy_never_raises(text):
    policy = parse_serialized_policy(text)
    for name in policy.directives:
        assert name == name.lower() and name.isascii() and ";" not in name


@FUZZ
@given(st.none() | _policy_text, _headers,
       st.sampled_from(["script-src-elem", "style-src-attr", "img-src", "default-src", "bogus"]))
def test_response_policies_are_sendable_or_invalid_policy(extension, headers, directive):
    parse_response_policies(headers)
    policies = response_policies(extension, headers)
    effective_sources(policies, directive)
    allows_inline(policies, directive)
    try:
        items = csp_header_items(policies)
    except InvalidPolicy as exc:
        assert str(exc)
        return
    reparsed = parse_response_policies(items)
    assert [p.directives for p in reparsed] == [p.directives for p in policies if p.directives]
