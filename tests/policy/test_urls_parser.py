"""The parser binding of protoreg.policy.urls: ada's C API (the fast path) against ada_url's public functions (the
fallback), and resolve()'s yarl.URL built from ada's offsets against yarl's own split of the href."""

from __future__ import annotations

import sys
import types

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from protoreg.errors import InvalidURL
from protoreg.policy import urls
from tests.conftest import conformance_cases

REG = frozenset({"web+foo", "ipfs"})
_WPT = "wpt-url"
_CASE_FILES = ("urltestdata.json", "custom-scheme-candidates.json", "special-base-relative.json",
               "nonspecial-scheme-cases.json")


def _cases():
    """Every WPT-derived case (input and base), or the one skipped placeholder per file when the data is absent."""
    return [pytest.param(case, id=f"{name}:{i}") if isinstance(case, dict) else case for name in _CASE_FILES
            for i, case in enumerate(conformance_cases(_WPT, name))]


def _answer(parse, text, base):
    try:
        return parse(text, base)[0]
    except ValueError as exc:
        return ("ValueError", str(exc))


def _outcome(url, base):
    """Everything resolve_href and resolve answer for one input: the href, the yarl.URL's parts, or the error."""
    try:
        href = urls.resolve_href(url, base, registered=REG)
    except InvalidURL as exc:
        href = ("InvalidURL", str(exc))
    try:
        u = urls.resolve(url, base, registered=REG)
        parsed = (str(u), u.scheme, u.raw_authority, u.raw_path, u.raw_query_string, u.raw_fragment, u.raw_host,
                  u.explicit_port, u)
    except InvalidURL as exc:
        parsed = ("InvalidURL", str(exc))
    return href, parsed


def _both_paths(monkeypatch, url, base):
    """(outcome through ada's C API, outcome through ada_url's public functions and URL(href, encoded=True))."""
    fast = _outcome(url, base)
    with monkeypatch.context() as m:
        m.setattr(urls, "_parse_ada", urls._parse_public)
        fallback = _outcome(url, base)
    return fast, fallback


def test_the_c_api_is_in_use_with_the_installed_ada_url():
    # Fails when an ada-url release moves or changes its cffi module: resolution still works (through the public
    # functions) but the fast path is gone, and the binding in protoreg/policy/urls.py needs a look.
    assert urls.FAST_PARSER, f"ada-url {ada_url.get_version()}: ada_url._ada_wrapper is missing or answers differently"
    assert urls._parse_ada is urls._parse_c


def test_a_missing_or_changed_c_module_falls_back_to_the_public_functions(monkeypatch):
    from ada_url._ada_wrapper import ffi

    monkeypatch.setitem(sys.modules, "ada_url._ada_wrapper", types.ModuleType("ada_url._ada_wrapper"))
    assert urls._c_api_parser() is None  # nothing to import
    fake = types.ModuleType("ada_url._ada_wrapper")
    fake.ffi = ffi
    fake.lib = types.SimpleNamespace(ada_parse=None, ada_parse_with_base=None)  # a function gone
    monkeypatch.setitem(sys.modules, "ada_url._ada_wrapper", fake)
    assert urls._c_api_parser() is None


def test_a_c_module_that_answers_differently_is_not_used(monkeypatch):
    assert urls._c_api_parser() is not None
    real = ada_url.join_url
    monkeypatch.setattr(ada_url, "join_url", lambda base, text: real(base, text) + "x")
    assert urls._c_api_parser() is None


@pytest.mark.conformance
@pytest.mark.parametrize("case", _cases())
def test_the_c_api_gives_the_hrefs_of_ada_urls_public_functions(case):
    assert urls.FAST_PARSER
    for base in (case["base"], None):
        fast = _answer(urls._parse_c, case["input"], base)
        assert fast == _answer(urls._parse_public, case["input"], base)
        if isinstance(fast, str):  # and the offsets are where ada's own getters say the parts are
            href, (pe, he, ps, ss, hs) = urls._parse_c(case["input"], base)
            parts = ada_url.URL(case["input"], base)
            end = len(href) if hs == urls._OMITTED else hs
            search = "" if ss == urls._OMITTED else href[ss:end]
            fragment = "" if hs == urls._OMITTED else href[hs:]
            assert href[:pe] == parts.protocol
            assert href[:he].endswith(parts.hostname) and href[:ps].endswith(parts.host)
            assert href[ps:end if ss == urls._OMITTED else ss] == parts.pathname
            assert (search if search != "?" else "") == parts.search
            assert (fragment if fragment != "#" else "") == parts.hash


@pytest.mark.conformance
@pytest.mark.parametrize("case", _cases())
def test_resolve_through_the_c_api_answers_as_through_the_public_functions(monkeypatch, case):
    for url, base in ((case["input"], case["base"]), (case["input"], None)):
        fast, fallback = _both_paths(monkeypatch, url, base)
        assert fast == fallback


@pytest.mark.parametrize("url, base", [
    ("web+foo://[::1]:8/x?q#f", None), ("//u:p@[::1]:8/x", "web+foo://h/"), ("x://[::1]:8/y", None),
    ("ipfs://u:p@h:99/a/../b?c=d#e", None), ("web+foo:/.//x", None), ("x:/.//y?q", None), ("x:////y", None),
    ("x://h?q#f#g", None), ("web+foo://h/p#a?b", None), ("?", "web+foo://h/p"), ("#", "x://h/p?q"),
    ("x:opaque path?q#f", None), ("file:///C:/x", None), ("web+foo://xn--9ca.example/", None),
    ("web+foo://u@xn--.b/", None), ("web+foo://h:0x1/", None), ("web+foo://\u00e9.example/\u00e9?\u00e9#\u00e9", None),
    ("x://\u00e9/", None), ("x://a%5Cb/", None), ("\ud800", "web+foo://h/"), ("a", "\ud800:x"),
])
def test_edge_cases_agree_on_both_paths(monkeypatch, url, base):
    fast, fallback = _both_paths(monkeypatch, url, base)
    assert fast == fallback


_text = st.one_of(
    st.text(max_size=30),
    st.builds(lambda s, a, p: f"{s}{a}{p}",
              st.sampled_from(["web+foo:", "ipfs://", "WEB+FOO://", "x-y://", "https://", "x:", "file:///", "//", ""]),
              st.text(alphabet="abé.-:[]%@0123456789xn-", max_size=14),
              st.text(alphabet="/.\\?#%ab\t é", max_size=14)),
)


@settings(max_examples=400, deadline=None)
@given(_text, st.one_of(st.none(), st.sampled_from(["web+foo://h/a/b?q#f", "ipfs://c:8/d", "https://x/y",
                                                    "a:b", "x://[::1]/p", "file:///c/d"])))
def test_both_paths_agree_on_generated_input(text, base):
    fast = _outcome(text, base)
    saved = urls._parse_ada
    urls._parse_ada = urls._parse_public  # (monkeypatch can't be used inside @given)
    try:
        fallback = _outcome(text, base)
    finally:
        urls._parse_ada = saved
    assert fast == fallback
    assert _answer(urls._parse_c, text, base) == _answer(urls._parse_public, text, base)


def test_the_url_is_built_from_parts_not_by_splitting_the_href(monkeypatch):
    # The point of the offsets: yarl's split of the href (its split_url) is skipped (docs/benchmarks.md).
    import uuid

    import yarl._url

    def no_split(*args):
        raise AssertionError("yarl split the href")

    monkeypatch.setattr(yarl._url, "split_url", no_split)
    ref = f"../a?{uuid.uuid4().hex}#c"  # unique: yarl's own caches can't answer
    got = urls.resolve(ref, "web+foo://h:8/d/e", registered=REG)
    assert isinstance(got, URL) and str(got) == f"web+foo://h/{ref[3:]}"
    monkeypatch.setattr(urls, "_parse_ada", urls._parse_public)  # the fallback does split: the probe works
    with pytest.raises(AssertionError, match="yarl split"):
        urls.resolve(f"../a?{uuid.uuid4().hex}", "web+foo://h:8/d/e", registered=REG)
