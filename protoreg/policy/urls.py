"""WHATWG URL resolution where registered schemes behave exactly like https, with ports stripped (pure, no I/O).

The parser is ada (the WHATWG URL parser also used by Node.js). ada only treats the six WHATWG special schemes as
special, so a registered scheme is parsed as if it were ``https`` and renamed back afterwards: backslashes, dot
segments, percent-encoding, IDNA and IPv4 hosts then behave as in https, and a relative reference resolves against
a registered-scheme base. Any port is stripped. An invalid port is still an error, as it is for https (a
port-stripping scheme does not make a malformed authority valid). Unregistered schemes keep WHATWG's non-special
behaviour, untouched.

``urllib.parse.urljoin`` and ``yarl.URL.join`` return the reference unchanged for unknown schemes, so neither can
be the resolver.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container
from typing import Final

import ada_url
from yarl import URL

from protoreg.errors import InvalidURL

__all__ = ["resolve", "resolve_href", "scheme_of"]

_STRIP: Final = "".join(chr(i) for i in range(0x21))  # C0 controls and space, stripped at both ends
_TAB_NEWLINE: Final = str.maketrans("", "", "\t\n\r")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
_EMPTY_HOST: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[/\\]*(?:[?#]|$)")
_AUTHORITY: Final = re.compile(r"https://([^/?#]*)")
_SPECIAL: Final = "https"


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


def _registered(href: str, url: str, base: str | None) -> str:
    """Check the host of a registered-scheme href parsed as https, then strip its port.

    ``href`` is ada's serialization, so its authority is well formed: ``[userinfo@]host[:port]``, the host either
    bracketed IPv6 or free of ``:``. An ``xn--`` label with nothing after the prefix (``web+x://xn--/``) is an
    empty Punycode label: ada (and the WPT data for https) accept it, but it names no Unicode host, can't be decoded
    and can't be a gateway label, so a registered scheme refuses it (docs/urls.md, Deviations)."""
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
        if "xn--" in href[at:host_end] and any(label == "xn--" for label in href[at:host_end].split(".")):
            host = href[at:host_end]
            raise InvalidURL(url, f"the host {host!r} has an empty Punycode label 'xn--' (nothing follows the "
                                  "prefix): write the host's Unicode form or its complete xn-- encoding", base=base)
    return href if host_end == end else href[:host_end] + href[end:]


@functools.lru_cache(maxsize=256)
def _prepared_base(base: str) -> tuple[str, str | None]:
    """A base URL's pre-processed text and lowercased scheme: bases repeat (a page's links share one), so cached."""
    text = _prepare(base)
    m = _SCHEME.match(text)
    return text, (m.group(1).lower() if m else None)


def _reason(text: str, registered: bool) -> str:
    if registered and _EMPTY_HOST.match(text):
        return "the URL has an empty host; a registered scheme needs one, as in scheme://host/path"
    kind = "a registered scheme (parsed like https)" if registered else "WHATWG URL rules"
    return f"not a valid URL under {kind}: check the host, port and percent-encoding"


def resolve(url: str, base: str | None = None, *, registered: Container[str] = frozenset()) -> URL:
    """Parse ``url`` (against ``base`` when relative) with WHATWG rules; registered schemes act like https.

    Raises :class:`~protoreg.errors.InvalidURL`, and nothing else, for input that can't be parsed. The result is a
    ``yarl.URL``, which can't tell an empty query or fragment (``x?``, ``x#``) from none; :func:`resolve_href`
    gives the exact WHATWG serialization.
    """
    href = resolve_href(url, base, registered=registered)
    try:
        return URL(href, encoded=True)
    except (ValueError, TypeError) as exc:
        raise InvalidURL(url, f"yarl can't represent the parsed URL {href!r}: {exc}", base=base) from None


def resolve_href(url: str, base: str | None = None, *, registered: Container[str] = frozenset()) -> str:
    """Like :func:`resolve`, but returns the exact WHATWG href string."""
    if not isinstance(url, str):
        raise InvalidURL(repr(url), f"expected a str, got {type(url).__name__}")
    text = _prepare(url)
    m = _SCHEME.match(text)
    scheme = m.group(1).lower() if m else None
    base_text, base_scheme = _prepared_base(base) if base is not None else (None, None)
    try:
        if scheme is not None:
            if scheme in registered:
                if base_scheme == scheme:  # "ipfs:foo" against an ipfs: base is relative, as https:foo is
                    href = ada_url.join_url(_as_special(base_text, len(scheme)),  # type: ignore[arg-type]
                                            _as_special(text, len(scheme)))
                else:
                    href = ada_url.normalize_url(_as_special(text, len(scheme)))
                return scheme + _registered(href, url, base)[len(_SPECIAL):]
            if base_text is not None and base_scheme == scheme:
                return ada_url.join_url(base_text, text)
            return ada_url.normalize_url(text)
        if base_text is None:
            raise InvalidURL(url, "a relative URL needs a base URL")
        if base_scheme is not None and base_scheme in registered:
            href = ada_url.join_url(_as_special(base_text, len(base_scheme)), text)
            return base_scheme + _registered(href, url, base)[len(_SPECIAL):]
        return ada_url.join_url(base_text, text)
    except InvalidURL:
        raise
    except (ValueError, TypeError, UnicodeError):
        pass
    if (base_text is not None and scheme is None) or (base_scheme is not None and base_scheme == scheme):
        # Is the base itself the problem?
        try:
            resolve_href(base, registered=registered)  # type: ignore[arg-type]
        except InvalidURL as exc:
            raise InvalidURL(url, f"its base is invalid: {exc.reason}", base=base) from None
    raise InvalidURL(url, _reason(text, scheme in registered if scheme else
                                  (base_scheme in registered if base_scheme else False)), base=base)
