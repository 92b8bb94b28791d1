"""CORS decisions per the Fetch standard, with failure messages that say what the handler must send."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from protoreg.errors import PolicyError
from protoreg.policy import cors

ORIGIN = "web+a://x"
URL = "web+b://y/data"
ALLOW = {"Access-Control-Allow-Origin": ORIGIN}


# --- safelisted methods and request headers -------------------------------------------------------

@pytest.mark.parametrize(("method", "ok"), [("GET", True), ("HEAD", True), ("POST", True), ("PUT", False),
                                            ("DELETE", False), ("OPTIONS", False), ("PATCH", False),
                                            ("get", False), ("Post", False)])
def test_safelisted_methods_are_get_head_post_compared_case_sensitively(method, ok):
    assert cors.is_cors_safelisted_method(method) is ok


@pytest.mark.parametrize(("name", "value", "ok"), [
    ("Accept", "text/html", True),
    ("ACCEPT", "*/*", True),
    ("Accept", "text/html,\tapplication/xhtml+xml;q=0.9", True),  # HTAB is allowed
    ("Accept", "text/html(", False),
    ("Accept", "a" * 128, True),
    ("Accept", "a" * 129, False),
    ("Accept", "\u00fc" * 128, True),  # 128 bytes in the isomorphic encoding
    ("Accept", "\u20ac" * 43, False),  # 129 bytes of UTF-8
    ("Accept-Language", "en-US,fr;q=0.5", True),
    ("Content-Language", "en-US", True),
    ("Content-Language", "en_US", False),
    ("Content-Language", "en\n", False),
    ("Content-Type", "text/plain", True),
    ("Content-Type", "text/plain; charset=utf-8", True),
    ("Content-Type", "Text/Plain;charset=UTF-8", True),
    ("Content-Type", "  multipart/form-data ; boundary=x", True),
    ("Content-Type", "application/x-www-form-urlencoded", True),
    ("Content-Type", "text/plain;", True),
    ("Content-Type", 'text/plain; charset="utf-8"', False),  # '"' is a CORS-unsafe request-header byte
    ("Content-Type", "text/plain; a=b@c", False),
    ("Content-Type", "application/json", False),
    ("Content-Type", "text/plain garbage", False),
    ("Content-Type", "text/", False),
    ("Content-Type", "text/plain;" + "a" * 117, True),
    ("Content-Type", "text/plain;" + "a" * 118, False),
    ("Range", "bytes=0-", True),
    ("Range", "bytes=0-499", True),
    ("Range", "bytes=5-5", True),
    ("Range", "bytes=5-1", False),
    ("Range", "bytes=-500", False),  # a suffix range is never safelisted
    ("Range", "bytes=0-1,3-4", False),
    ("Range", "Bytes=0-1", False),
    ("Range", "bytes = 0-1", False),
    ("Range", "bytes=0-1\n", False),
    ("X-Custom", "1", False),
    ("Authorization", "Bearer x", False),
    ("DPR", "2", False),  # Client hints were removed from the safelist
])
def test_cors_safelisted_request_headers_follow_fetch(name, value, ok):
    assert cors.is_cors_safelisted_request_header(name, value) is ok


@pytest.mark.parametrize("char", list('"():<>?@[\\]{}\x7f\x00\x1f\n\r'))
def test_every_cors_unsafe_byte_makes_accept_and_content_type_unsafe(char):
    assert not cors.is_cors_safelisted_request_header("Accept", f"text/html{char}")
    assert not cors.is_cors_safelisted_request_header("Content-Type", f"text/plain;x={char}")


def test_unsafe_names_are_sorted_lowercased_and_unique():
    headers = [("X-B", "1"), ("x-a", "2"), ("X-A", "3"), ("Accept", "*/*"),
               ("Content-Type", "application/json")]
    assert cors.cors_unsafe_request_header_names(headers) == ["content-type", "x-a", "x-b"]


def test_safelisted_headers_up_to_1024_bytes_together_stay_safe():
    headers = [("Accept", "a" * 128)] * 8
    assert cors.cors_unsafe_request_header_names(headers) == []


def test_safelisted_headers_over_1024_bytes_together_all_become_unsafe():
    headers = [*[("Accept", "a" * 128)] * 7, ("Content-Language", "b" * 128), ("Range", "bytes=0-")]
    assert cors.cors_unsafe_request_header_names(headers) == ["accept", "content-language", "range"]


def test_unsafe_headers_do_not_count_towards_the_1024_byte_total():
    headers = [("Accept", "a" * 128), ("X-Big", "b" * 5000)]
    assert cors.cors_unsafe_request_header_names(headers) == ["x-big"]


# --- preflight ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "headers", "needed"), [
    ("GET", [], False),
    ("GET", [("Accept", "*/*"), ("Range", "bytes=0-")], False),
    ("POST", [("Content-Type", "text/plain")], False),
    ("HEAD", [("Accept-Language", "de")], False),
    ("PUT", [], True),
    ("DELETE", [], True),
    ("GET", [("X-Custom", "1")], True),
    ("POST", [("Content-Type", "application/json")], True),
    ("GET", [("Range", "bytes=-5")], True),
    ("GET", [("Accept", "a" * 129)], True),
])
def test_needs_preflight_for_unsafe_methods_or_headers(method, headers, needed):
    assert cors.needs_preflight(method, headers) is needed


def test_preflight_request_carries_origin_method_and_sorted_unsafe_header_names():
    out = cors.preflight_request_headers(ORIGIN, "PUT", [("X-B", "1"), ("x-a", "2"), ("Accept", "*/*")])
    assert out == [("Origin", ORIGIN), ("Accept", "*/*"), ("Access-Control-Request-Method", "PUT"),
                   ("Access-Control-Request-Headers", "x-a,x-b")]


def test_preflight_request_omits_request_headers_when_all_are_safelisted():
    out = dict(cors.preflight_request_headers(ORIGIN, "DELETE", [("Accept", "*/*")]))
    assert "Access-Control-Request-Headers" not in out
    assert out["Access-Control-Request-Method"] == "DELETE"


def test_preflight_passes_when_method_and_headers_are_listed():
    cors.check_preflight(204, {**ALLOW, "Access-Control-Allow-Methods": "PUT, DELETE",
                               "Access-Control-Allow-Headers": "X-Custom, Content-Type"},
                         origin=ORIGIN, method="PUT",
                         request_headers=[("x-custom", "1"), ("Content-Type", "a/b")])


def test_preflight_passes_with_wildcards_without_credentials():
    cors.check_preflight(200, {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*",
                               "Access-Control-Allow-Headers": "*"},
                         origin=ORIGIN, method="PATCH", request_headers=[("X-Any", "1"), ("X-Other", "2")])


def test_preflight_passes_for_a_safelisted_method_without_allow_methods():
    cors.check_preflight(200, {**ALLOW, "Access-Control-Allow-Headers": "x-custom"},
                         origin=ORIGIN, method="GET", request_headers=[("X-Custom", "1")])


def test_preflight_with_credentials_passes_when_everything_is_explicit():
    cors.check_preflight(200, CIMultiDict([("access-control-allow-origin", ORIGIN),
                                           ("Access-Control-Allow-Credentials", "true"),
                                           ("Access-Control-Allow-Methods", "PUT"),
                                           ("Access-Control-Allow-Methods", "DELETE"),
                                           ("Access-Control-Allow-Headers", "Authorization")]),
                         origin=ORIGIN, method="DELETE", request_headers=[("Authorization", "x")],
                         credentials=True)


@pytest.mark.parametrize(("status", "headers", "method", "req", "creds", "needle"), [
    (500, ALLOW, "PUT", [], False, "the handler answered 500, not an ok status"),
    (302, ALLOW, "PUT", [], False, "answered 302"),
    (200, {}, "PUT", [], False, "no Access-Control-Allow-Origin header"),
    (200, {"Access-Control-Allow-Origin": "web+c://z"}, "PUT", [], False, "is 'web+c://z', not 'web+a://x'"),
    (200, {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "PUT",
           "Access-Control-Allow-Credentials": "true"}, "PUT", [], True, "'*', which doesn't cover"),
    (200, ALLOW, "PUT", [], False, 'method PUT is not in Access-Control-Allow-Methods (absent). The handler '
                                   'for web+b must send "Access-Control-Allow-Methods: PUT"'),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "put"}, "PUT", [], False, "method PUT is not in"),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "*", "Access-Control-Allow-Credentials": "true"}, "PUT",
     [], True, "'*' doesn't cover requests with credentials"),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "PUT DELETE"}, "PUT", [], False,
     "'PUT DELETE' is not an HTTP token"),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "PUT"}, "PUT", [("X-C", "1")], False,
     "request header 'x-c' is not in Access-Control-Allow-Headers (absent). The handler for web+b must send "
     '"Access-Control-Allow-Headers: x-c"'),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "*",
           "Access-Control-Allow-Credentials": "true"}, "PUT", [("X-C", "1")], True,
     "'*' doesn't cover requests with credentials"),
    (200, {**ALLOW, "Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "*"}, "PUT",
     [("Authorization", "x")], False, "'authorization' is not in Access-Control-Allow-Headers (*) "
                                      "('*' never covers Authorization)"),
    (200, {**ALLOW, "Access-Control-Allow-Headers": "x-a x-b"}, "GET", [("X-A", "1")], False,
     "not an HTTP token"),
])
def test_preflight_failures_say_what_failed_and_what_to_send(status, headers, method, req, creds, needle):
    with pytest.raises(PolicyError, match=r"^CORS preflight \(OPTIONS\) from web\+a://x to web\+b://y/data "
                                          r"failed: ") as info:
        cors.check_preflight(status, headers, origin=ORIGIN, method=method, request_headers=req,
                             credentials=creds, url=URL)
    assert needle in str(info.value)


# --- CORS check -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "credentials"), [
    (ALLOW, False),
    ({"Access-Control-Allow-Origin": "*"}, False),
    ({"access-control-allow-origin": f" {ORIGIN} "}, False),
    ({**ALLOW, "Access-Control-Allow-Credentials": "true"}, True),
    (CIMultiDict(ALLOW), False),
    ([("ACCESS-CONTROL-ALLOW-ORIGIN", ORIGIN)], False),
])
def test_cors_check_passes_with_the_exact_origin_or_star_without_credentials(headers, credentials):
    cors.cors_check(headers, origin=ORIGIN, credentials=credentials)


def test_cors_check_lets_an_opaque_initiator_through_only_by_null_or_star():
    cors.cors_check({"Access-Control-Allow-Origin": "null"}, origin="null")
    with pytest.raises(PolicyError):
        cors.cors_check(ALLOW, origin="null")


@pytest.mark.parametrize(("headers", "credentials", "needle"), [
    ({}, False, 'the response has no Access-Control-Allow-Origin header. The handler for web+b must send '
                '"Access-Control-Allow-Origin: web+a://x" (or "*") to allow it'),
    ({"Access-Control-Allow-Origin": "web+b://y"}, False, "is 'web+b://y', not 'web+a://x'"),
    ({"Access-Control-Allow-Origin": "web+a://x/"}, False, "is 'web+a://x/', not 'web+a://x'"),
    ({"Access-Control-Allow-Origin": "WEB+A://X"}, False, "not 'web+a://x'"),
    ({"Access-Control-Allow-Origin": "*"}, True,
     "is '*', which doesn't cover a request with credentials. The handler for web+b must send "
     '"Access-Control-Allow-Origin: web+a://x" to allow it'),
    (ALLOW, True, "Access-Control-Allow-Credentials is not 'true'. The handler for web+b must send "
                  '"Access-Control-Allow-Credentials: true"'),
    ({**ALLOW, "Access-Control-Allow-Credentials": "True"}, True, "is not 'true'"),
    (CIMultiDict([("Access-Control-Allow-Origin", ORIGIN), ("Access-Control-Allow-Origin", ORIGIN)]), False,
     "holds several values ('web+a://x, web+a://x'), but only one is allowed"),
])
def test_cors_check_failures_explain_the_fix(headers, credentials, needle):
    blocked = r"^cross-origin fetch from web\+a://x to web\+b://y/data was blocked by CORS: "
    with pytest.raises(PolicyError, match=blocked) as info:
        cors.cors_check(headers, origin=ORIGIN, credentials=credentials, url=URL)
    assert needle in str(info.value)


def test_cors_check_without_url_still_names_the_fix():
    with pytest.raises(PolicyError, match=r'The handler must send "Access-Control-Allow-Origin: web\+a://x"'):
        cors.cors_check({}, origin=ORIGIN)


def test_policy_error_is_a_permission_error():
    with pytest.raises(PermissionError):
        cors.cors_check({}, origin=ORIGIN)


# --- what a cross-origin caller sees --------------------------------------------------------------

HEADERS = [("Content-Type", "text/plain"), ("X-Secret", "1"), ("X-Shown", "2"), ("Cache-Control", "no-store"),
           ("Set-Cookie", "a=b")]


def test_cross_origin_callers_see_only_safelisted_and_exposed_headers():
    headers = [*HEADERS, ("Access-Control-Expose-Headers", "x-shown")]
    assert [n for n, _ in cors.cors_filtered_headers(headers)] == ["Content-Type", "X-Shown", "Cache-Control"]


def test_expose_headers_from_several_header_lines_combine():
    headers = [*HEADERS, ("Access-Control-Expose-Headers", "X-Shown"),
               ("access-control-expose-headers", "X-Secret")]
    assert [n for n, _ in cors.cors_filtered_headers(headers)] == ["Content-Type", "X-Secret", "X-Shown",
                                                                   "Cache-Control"]


def test_set_cookie_is_never_exposed_even_when_listed():
    headers = [*HEADERS, ("Access-Control-Expose-Headers", "Set-Cookie, X-Shown")]
    assert "Set-Cookie" not in [n for n, _ in cors.cors_filtered_headers(headers)]


def test_star_exposes_everything_but_set_cookie_without_credentials_only():
    headers = [*HEADERS, ("Access-Control-Expose-Headers", "*")]
    everything = [n for n, _ in cors.cors_filtered_headers(headers)]
    assert everything == ["Content-Type", "X-Secret", "X-Shown", "Cache-Control",
                          "Access-Control-Expose-Headers"]
    with_credentials = [n for n, _ in cors.cors_filtered_headers(headers, credentials=True)]
    assert with_credentials == ["Content-Type", "Cache-Control"]


def test_a_malformed_expose_list_exposes_nothing_extra():
    headers = [*HEADERS, ("Access-Control-Expose-Headers", "X-Shown X-Secret")]
    assert [n for n, _ in cors.cors_filtered_headers(headers)] == ["Content-Type", "Cache-Control"]


def test_opaque_response_is_status_zero_no_headers_empty_body():
    assert (cors.OPAQUE_STATUS, cors.OPAQUE_HEADERS, cors.OPAQUE_BODY) == (0, (), b"")


# --- properties -----------------------------------------------------------------------------------

header_pairs = st.lists(st.tuples(st.sampled_from(["Accept", "Content-Type", "Range", "Content-Language",
                                                   "X-Custom", "Authorization"]),
                                  st.text(max_size=40)), max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]), header_pairs)
def test_a_preflight_that_echoes_the_request_always_passes(method, headers):
    names = cors.cors_unsafe_request_header_names(headers)
    assert names == sorted(set(names)) and all(n == n.lower() for n in names)
    assert cors.needs_preflight(method, headers) == (method in ("PUT", "DELETE") or bool(names))
    sent = dict(cors.preflight_request_headers(ORIGIN, method, headers))
    echo = {"Access-Control-Allow-Origin": sent["Origin"],
            "Access-Control-Allow-Methods": sent["Access-Control-Request-Method"],
            "Access-Control-Allow-Headers": sent.get("Access-Control-Request-Headers", ""),
            "Access-Control-Allow-Credentials": "true"}
    cors.check_preflight(200, echo, origin=ORIGIN, method=method, request_headers=headers, credentials=True)
