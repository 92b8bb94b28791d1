"""Fuzz target: CORS header checks (protoreg.policy.cors). Only PolicyError may escape the checks; the other helpers
never raise."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from protoreg.errors import PolicyError
from protoreg.policy.cors import (
    check_preflight,
    cors_check,
    cors_filtered_headers,
    cors_unsafe_request_header_names,
    needs_preflight,
    preflight_request_headers,
)

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
_names = st.sampled_from(["Access-Control-Allow-Origin", "access-control-allow-credentials",
                          "Access-Control-Allow-Methods", "ACCESS-CONTROL-ALLOW-HEADERS",
                          "Access-Control-Expose-Headers", "Content-Type", "Range", "Authorization", "Accept",
                          "Accept-Language", "Set-Cookie", "X-Custom"]) | st.text(max_size=10)
_values = st.sampled_from(["*", "null", "true", "web+a://x", "GET, PUT", "x-custom, *", "", " , ", "bytes=0-",
                           "text/plain", "multipart/form-data; boundary=x", "é", "\x00", "a" * 200]) | st.text(
                               max_size=20)
_headers = st.lists(st.tuples(_names, _values), max_size=6)
_origins = st.sampled_from(["web+a://x", "null", "https://example.org", "", "é"]) | st.text(max_size=12)
_methods = st.sampled_from(["GET", "POST", "PUT", "get", "DELETE", "", "X Y"]) | st.text(max_size=8)


@FUZZ
@given(_headers, _origins, st.booleans(), st.sampled_from([None, "web+b://y/", "\x00"]),
       st.sampled_from(["pairs", "dict", "multidict"]))
def test_cors_check_raises_only_policy_error(headers, origin, credentials, url, shape):
    given_headers = {"pairs": headers, "dict": dict(headers), "multidict": CIMultiDict(headers)}[shape]
    try:
        cors_check(given_headers, origin=origin, credentials=credentials, url=url)
    except PolicyError as exc:
        assert str(exc)
    cors_filtered_headers(headers, credentials=credentials)


@FUZZ
@given(st.integers(-1, 700), _headers, _origins, _methods, _headers, st.booleans())
def test_preflight_raises_only_policy_error(status, headers, origin, method, request_headers, credentials):
    needs_preflight(method, request_headers)
    cors_unsafe_request_header_names(request_headers)
    preflight_request_headers(origin, method, request_headers)
    try:
        check_preflight(status, headers, origin=origin, method=method, request_headers=request_headers,
                        credentials=credentials, url="web+b://y/")
    except PolicyError as exc:
        assert str(exc)
