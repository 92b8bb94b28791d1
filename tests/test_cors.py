"""CORS decisions per the Fetch standard, with failure messages that say what the handler must send."""

from __future__ import annotations

import pytest

from protoreg import cors
from protoreg.errors import PolicyError

O = "web+a://x"


@pytest.mark.parametrize(("name", "value", "ok"), [
    ("Accept", "text/html", True),
    ("Accept", "text/html(", False),
    ("Content-Type", "text/plain; charset=utf-8", True),
    ("Content-Type", "application/json", False),
    ("Content-Type", "multipart/form-data; boundary=x", True),
    ("Content-Language", "en-US", True),
    ("Content-Language", "en_US", False),
    ("Range", "bytes=0-", True),
    ("Range", "bytes=5-1", False),
    ("Range", "bytes=0-1,3-4", False),
    ("X-Custom", "1", False),
    ("Accept", "a" * 129, False),
])
def test_cors_safelisted_request_headers(name, value, ok):
    assert cors.is_cors_safelisted_request_header(name, value) is ok


def test_simple_requests_need_no_preflight_and_others_do():
    assert not cors.needs_preflight("GET", [("Accept", "*/*")])
    assert not cors.needs_preflight("POST", [("Content-Type", "text/plain")])
    assert cors.needs_preflight("PUT", [])
    assert cors.needs_preflight("GET", [("X-Custom", "1")])
    assert cors.needs_preflight("POST", [("Content-Type", "application/json")])


def test_safelisted_headers_over_1024_bytes_together_become_unsafe():
    headers = [("Accept", "a" * 100)] * 11
    assert cors.cors_unsafe_request_header_names(headers) == ["accept"]


def test_preflight_request_carries_method_and_sorted_unsafe_header_names():
    out = dict(cors.preflight_request_headers(O, "PUT", [("X-B", "1"), ("x-a", "2"), ("Accept", "*/*")]))
    assert out == {"Origin": O, "Accept": "*/*", "Access-Control-Request-Method": "PUT",
                   "Access-Control-Request-Headers": "x-a,x-b"}


def test_cors_check_passes_with_matching_origin_or_star():
    cors.cors_check({"Access-Control-Allow-Origin": O}, origin=O)
    cors.cors_check({"Access-Control-Allow-Origin": "*"}, origin=O)
    cors.cors_check({"Access-Control-Allow-Origin": O, "Access-Control-Allow-Credentials": "true"},
                    origin=O, credentials=True)


@pytest.mark.parametrize(("headers", "credentials", "needle"), [
    ({}, False, 'no Access-Control-Allow-Origin header. The handler must send "Access-Control-Allow-Origin: web+a://x"'),
    ({"Access-Control-Allow-Origin": "web+b://y"}, False, "is 'web+b://y', not 'web+a://x'"),
    ({"Access-Control-Allow-Origin": "*"}, True, "'*' is not allowed for a request with credentials"),
    ({"Access-Control-Allow-Origin": O}, True, "Access-Control-Allow-Credentials is not 'true'"),
])
def test_cors_check_failures_explain_the_fix(headers, credentials, needle):
    with pytest.raises(PolicyError, match="blocked by CORS") as info:
        cors.cors_check(headers, origin=O, credentials=credentials, url="web+b://y/data")
    assert needle in str(info.value)
    assert "web+b://y/data" in str(info.value)


def test_preflight_passes_when_method_and_headers_are_allowed():
    cors.check_preflight(204, {"Access-Control-Allow-Origin": O, "Access-Control-Allow-Methods": "PUT, DELETE",
                               "Access-Control-Allow-Headers": "X-Custom"},
                         origin=O, method="PUT", request_headers=[("X-Custom", "1")])
    cors.check_preflight(200, {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*",
                               "Access-Control-Allow-Headers": "*"},
                         origin=O, method="PATCH", request_headers=[("X-Any", "1")])


@pytest.mark.parametrize(("status", "headers", "method", "req", "creds", "needle"), [
    (500, {"Access-Control-Allow-Origin": O}, "PUT", [], False, "answered 500"),
    (200, {}, "PUT", [], False, "no Access-Control-Allow-Origin"),
    (200, {"Access-Control-Allow-Origin": O}, "PUT", [], False, "method PUT is not in Access-Control-Allow-Methods"),
    (200, {"Access-Control-Allow-Origin": O, "Access-Control-Allow-Methods": "PUT"}, "PUT", [("X-C", "1")], False,
     "request header 'x-c' is not in Access-Control-Allow-Headers"),
    (200, {"Access-Control-Allow-Origin": O, "Access-Control-Allow-Methods": "*",
           "Access-Control-Allow-Credentials": "true"}, "PUT", [], True, "method PUT is not in"),
    (200, {"Access-Control-Allow-Origin": O, "Access-Control-Allow-Methods": "PUT",
           "Access-Control-Allow-Headers": "*"}, "PUT", [("Authorization", "x")], False, "'authorization'"),
])
def test_preflight_failures_explain_the_fix(status, headers, method, req, creds, needle):
    with pytest.raises(PolicyError, match="CORS preflight") as info:
        cors.check_preflight(status, headers, origin=O, method=method, request_headers=req, credentials=creds)
    assert needle in str(info.value)


def test_cross_origin_callers_see_only_safelisted_and_exposed_headers():
    headers = [("Content-Type", "text/plain"), ("X-Secret", "1"), ("X-Shown", "2"),
               ("Access-Control-Expose-Headers", "X-Shown"), ("Set-Cookie", "a=b")]
    names = [n for n, _ in cors.cors_filtered_headers(headers)]
    assert names == ["Content-Type", "X-Shown"]
    star = [n for n, _ in cors.cors_filtered_headers([*headers[:3], ("Access-Control-Expose-Headers", "*"),
                                                      ("Set-Cookie", "a=b")])]
    assert "X-Secret" in star and "Set-Cookie" not in star
