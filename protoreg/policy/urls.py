"""WHATWG URL resolution where registered schemes behave exactly like https, with ports stripped (pure, no I/O).

The parser is ada (the WHATWG URL parser also used by Node.js). ada only treats the six WHATWG special schemes as
special, so a registered scheme is parsed as if it were ``https`` and renamed back afterwards: backslashes, dot
segments, percent-encoding, IDNA and IPv4 hosts then behave as in https, and a relative reference resolves against
a registered-scheme base. Any port is stripped. An invalid port is still an error, as it is for https (a
port-stripping scheme does not make a malformed authority valid). Unregistered schemes keep WHATWG's non-special
behaviour, untouched.

``urllib.parse.urljoin`` and ``yarl.URL.join`` return the reference unchanged for unknown schemes, so neither can
be the resolver.

ada is called through the C functions of the cffi module that the ada-url package ships (``ada_url._ada_wrapper``):
one parse, then the href and ada's component offsets, then an explicit free. That skips the per-call ``ffi.gc``
wrapper of ada_url's public functions, and the offsets let the ``yarl.URL`` be built from its parts instead of
yarl splitting the href again (docs/benchmarks.md, ``bench/url_resolve.py``). The module is not public API, so it
is checked against ada_url's public functions at import; if it is missing or answers differently, those public
functions are used instead (``FAST_PARSER`` tells which), with the same results.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container
from typing import Final

import ada_url
from yarl import URL

from protoreg.errors import InvalidURL

__all__ = ["FAST_PARSER", "resolve", "resolve_href", "scheme_of"]

_STRIP: Final = "".join(chr(i) for i in range(0x21))  # C0 controls and space, stripped at both ends
_TAB_NEWLINE: Final = str.maketrans("", "", "\t\n\r")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_EMPTY_HOST: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[/\\]*(?:[?#]|$)")
_AUTHORITY: Final = re.compile(r"https://([^/?#]*)")
_SPECIAL: Final = "https"
_OMITTED: Final = 0xFFFFFFFF  # ada's url_components::omitted: no query, no fragment
#: Component offsets of a parsed URL, as ada gives them: (protocol_end, host_end, pathname_start, search_start,
#: hash_start). protocol_end is just past the ":"; search_start and hash_start are _OMITTED when absent.
_Components = tuple[int, int, int, int, int]
_Parsed = tuple[str, "_Components | None"]


# -- the parser binding --------------------------------------------------------------------------------------------
def _parse_public(text: str, base: str | None) -> _Parsed:
    """ada through ada_url's public functions: (href, None); ValueError('Invalid URL') if it can't be parsed."""
    return (ada_url.normalize_url(text) if base is None else ada_url.join_url(base, text)), None


#: Inputs on which the C API must answer as ada_url's public functions do before it is used.
_SELF_CHECK: Final = [("../d?q#f", "https://a.example/b/c"), ("//u:p@[::1]:8/x?y", "web+x://h:1/p"), ("z", "x:/y"),
                      ("HTTPS://%41.example:443/./b/../c?#", None), ("b", "file:///a"), ("http://[", None),
                      ("x", "https://"), ("web+x:/.//p#a?b", None)]


def _c_api_parser() -> Callable[[str, str | None], _Parsed] | None:
    """ada through its C API, in the cffi module ada-url ships (the one its public functions call): (href, component
    offsets), with the same ValueError('Invalid URL') as :func:`_parse_public`. None if the module is missing, has
    changed, or answers differently from the public functions on a few known inputs."""
    try:
        from ada_url._ada_wrapper import ffi, lib

        parse, parse_with_base = lib.ada_parse, lib.ada_parse_with_base
        get_components, get_href, free, unpack = lib.ada_get_components, lib.ada_get_href, lib.ada_free, ffi.unpack
        if ffi.sizeof("ada_url_components") != 32:  # eight uint32_t offsets
            return None
    except Exception:  # missing or renamed
        return None

    def parse_c(text: str, base: str | None) -> _Parsed:
        try:
            data = text.encode()
            base_data = None if base is None else base.encode()
        except Exception:
            raise ValueError("Invalid URL") from None
        result = (parse(data, len(data)) if base_data is None
                  else parse_with_base(data, len(data), base_data, len(base_data)))
        try:  # freed here, not by ffi.gc: nothing outlives this call
            c = get_components(result)  # NULL when the URL is invalid
            if not c:
                raise ValueError("Invalid URL")
            h = get_href(result)
            return (unpack(h.data, h.length).decode(),
                    (c.protocol_end, c.host_end, c.pathname_start, c.search_start, c.hash_start))
        finally:
            free(result)

    try:
        for text, base in _SELF_CHECK:
            try:
                expected = _parse_public(text, base)[0]
            except ValueError:
                expected = None
            try:
                href, (pe, he, ps, ss, hs) = parse_c(text, base)
            except ValueError:
                href = None
            if href != expected or (href is not None and (
                    href[pe - 1] != ":" or not pe <= he <= ps <= len(href)
                    or (ss != _OMITTED and href[ss] != "?") or (hs != _OMITTED and href[hs] != "#"))):
                return None
    except Exception:
        return None
    return parse_c


_parse_c = _c_api_parser()
#: How ada is called: its C API when available (the fast path; :data:`FAST_PARSER` is then True), else ada_url's
#: public functions. Both give the same hrefs; only the C API gives the component offsets.
_parse_ada = _parse_c or _parse_public
FAST_PARSER: Final = _parse_c is not None


# -- resolution ----------------------------------------------------------------------------------------------------
def _prepare(text: str) -> str:
    """WHATWG's pre-processing: strip leading/trailing C0 control or space, remove ASCII tab and newline."""
    text = text.strip(_STRIP)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_TAB_NEWLINE)
    return text


def scheme_of(url: str) -> str | None:
    """The lowercased scheme of an absolute URL string, or None for a relative reference."""
    m = _SCHEME.match(_prepare(url))
    return m.group(1).lower() if m else None


def _as_special(text: str, scheme_len: int) -> str:
    return _SPECIAL + text[scheme_len:]


def _empty_punycode(host: str, url: str, base: str | None) -> None:
    """An ``xn--`` label with nothing after the prefix (``web+x://xn--/``) is an empty Punycode label: ada (and the
    WPT data for https) accept it, but it names no Unicode host, can't be decoded and can't be a gateway label, so a
    registered scheme refuses it (docs/urls.md, Deviations). ``host`` is ada's serialization (lowercase)."""
    if not host.startswith("[") and any(label == "xn--" for label in host.split(".")):
        raise InvalidURL(url, f"the host {host!r} has an empty Punycode label 'xn--' (nothing follows the "
                              "prefix): write the host's Unicode form or its complete xn-- encoding", base=base)


def _registered(href: str, url: str, base: str | None) -> str:
    """Check the host of a registered-scheme href parsed as https, then strip its port (from the href string: the
    public ada_url functions give no offsets).

    ``href`` is ada's serialization, so its authority is well formed: ``[userinfo@]host[:port]``, the host either
    bracketed IPv6 or free of ``:``."""
    m = _AUTHORITY.match(href)
    if m is None:  # pragma: no cover - ada always serializes a special URL with "//"
        return href
    start, end = m.span(1)
    at = href.rfind("@", start, end) + 1 or start
    if href.startswith("[", at):
        host_end = href.index("]", at, end) + 1
    else:
        colon = href.find(":", at, end)
        host_end = end if colon < 0 else colon
        if "xn--" in href[at:host_end]:
            _empty_punycode(href[at:host_end], url, base)
    return href if host_end == end else href[:host_end] + href[end:]


@functools.lru_cache(maxsize=256)
def _prepared_base(base: str) -> tuple[str, str | None, str | None]:
    """A base URL's pre-processed text, lowercased scheme and https form (the text with its scheme replaced by
    https, for a registered scheme): bases repeat (a page's links share one), so cached."""
    text = _prepare(base)
    m = _SCHEME.match(text)
    if m is None:
        return text, None, None
    return text, m.group(1).lower(), _as_special(text, m.end(1))


def _reason(text: str, registered: bool) -> str:
    if registered and _EMPTY_HOST.match(text):
        return "the URL has an empty host; a registered scheme needs one, as in scheme://host/path"
    kind = "a registered scheme (parsed like https)" if registered else "WHATWG URL rules"
    return f"not a valid URL under {kind}: check the host, port and percent-encoding"


def _parse(url: str, base: str | None, registered: Container[str]) -> tuple[str | None, str, _Components | None]:
    """Parse with ada: (the registered scheme that stands for ada's "https", or None; ada's href; its components,
    or None when the public ada_url functions parsed it). Raises InvalidURL, and nothing else."""
    if not isinstance(url, str):
        raise InvalidURL(repr(url), f"expected a str, got {type(url).__name__}")
    text = url.strip(_STRIP)  # _prepare, written out: this is the hot path
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_TAB_NEWLINE)
    m = _SCHEME.match(text) if ":" in text else None
    scheme = m.group(1).lower() if m else None
    if base is not None:
        base_text, base_scheme, base_special = _prepared_base(base)
    else:
        base_text = base_scheme = base_special = None
    # What ada parses, against which base, and the registered scheme that then stands for ada's "https".
    rename: str | None = None
    if scheme is not None:
        if scheme in registered:  # "ipfs:foo" against an ipfs: base is relative, as https:foo is
            rename = scheme
            against = base_special if base_scheme == scheme else None
            source = _as_special(text, len(scheme))
        else:
            against = base_text if base_scheme == scheme else None
            source = text
    elif base_text is None:
        raise InvalidURL(url, "a relative URL needs a base URL")
    elif base_scheme is not None and base_scheme in registered:
        rename = base_scheme
        against = base_special
        source = text
    else:
        against = base_text
        source = text
    try:
        href, components = _parse_ada(source, against)
    except (ValueError, TypeError, UnicodeError):
        pass
    else:
        if rename is not None:
            if components is None:
                href = rename + _registered(href, url, base)[len(_SPECIAL):]
                rename = None
            elif "xn--" in href:  # check the host: the authority without its port ("https://" is 8 characters)
                _empty_punycode(href[8:components[1]].rpartition("@")[2], url, base)
        return rename, href, components
    if (base_text is not None and scheme is None) or (base_scheme is not None and base_scheme == scheme):
        # Is the base itself the problem?
        try:
            resolve_href(base, registered=registered)  # type: ignore[arg-type]
        except InvalidURL as exc:
            raise InvalidURL(url, f"its base is invalid: {exc.reason}", base=base) from None
    raise InvalidURL(url, _reason(text, scheme in registered if scheme else
                                  (base_scheme in registered if base_scheme else False)), base=base)


def resolve(url: str, base: str | None = None, *, registered: Container[str] = frozenset()) -> URL:
    """Parse ``url`` (against ``base`` when relative) with WHATWG rules; registered schemes act like https.

    Raises :class:`~protoreg.errors.InvalidURL`, and nothing else, for input that can't be parsed. The result is a
    ``yarl.URL``, which can't tell an empty query or fragment (``x?``, ``x#``) from none; :func:`resolve_href`
    gives the exact WHATWG serialization.
    """
    rename, href, components = _parse(url, base, registered)
    if components is None:
        return _from_href(href, url, base)
    protocol_end, host_end, path_start, search_start, hash_start = components
    # The parts yarl's own split of the href would give (URL(href, encoded=True)), without splitting it again.
    if rename is not None:  # parsed as https: "https://" + authority, path always present; the port is dropped
        scheme = rename
        netloc = href[8:host_end]
    else:
        scheme = href[:protocol_end - 1]
        if href.startswith("//", protocol_end):
            netloc = href[protocol_end + 2:path_start]
        else:  # no authority: the path starts right after the scheme (a "/." before "//path" is kept, as in href)
            netloc = ""
            path_start = protocol_end
    if "[" in netloc or "\\" in netloc or not netloc.isascii():
        # yarl validates such an authority when it splits an href (IPv6 brackets, backslash, NFKC): let it.
        return _from_href(href if rename is None else f"{rename}://{netloc}{href[path_start:]}", url, base)
    if hash_start == _OMITTED:
        fragment = ""
        end = len(href)
    else:
        fragment = href[hash_start + 1:]
        end = hash_start
    if search_start == _OMITTED:
        query = ""
        path = href[path_start:end]
    else:
        query = href[search_start + 1:end]
        path = href[path_start:search_start]
    return URL.build(scheme=scheme, authority=netloc, path=path, query_string=query, fragment=fragment,
                     encoded=True)


def _from_href(href: str, url: str, base: str | None) -> URL:
    try:
        return URL(href, encoded=True)
    except (ValueError, TypeError) as exc:
        raise InvalidURL(url, f"yarl can't represent the parsed URL {href!r}: {exc}", base=base) from None


def resolve_href(url: str, base: str | None = None, *, registered: Container[str] = frozenset()) -> str:
    """Like :func:`resolve`, but returns the exact WHATWG href string."""
    rename, href, components = _parse(url, base, registered)
    if rename is None or components is None:
        return href
    return f"{rename}://{href[8:components[1]]}{href[components[2]:]}"
