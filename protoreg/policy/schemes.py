"""Which schemes an extension may claim: the browsers' registerProtocolHandler rules (pure)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["FORBIDDEN", "PREFIXES", "SAFELIST", "check_scheme"]

#: The HTML standard's safelisted schemes (registerProtocolHandler), as Firefox and Chromium ship them.
SAFELIST: Final = frozenset({
    "bitcoin", "dat", "dweb", "ftp", "geo", "gopher", "im", "ipfs", "ipns", "irc", "ircs", "magnet", "mailto",
    "matrix", "mms", "news", "nntp", "sip", "sms", "smsto", "ssb", "ssh", "tel", "urn", "webcal", "wtai", "xmpp",
})
#: Schemes with built-in meaning that no extension can take over: the fetch and WHATWG special schemes, local
#: schemes, and browser-internal ones. ``ftp`` is a WHATWG special scheme too, but the HTML standard safelists it and
#: browsers (which no longer implement FTP) let pages claim it, so protoreg does the same (docs/manifest.md).
FORBIDDEN: Final = frozenset({"http", "https", "ws", "wss", "file", "data", "blob", "javascript", "about",
                              "filesystem", "chrome", "resource", "moz-extension", "chrome-extension"})
#: A claimable scheme is safelisted, or one of these prefixes followed by one or more lowercase ASCII letters.
PREFIXES: Final = ("web+", "ext+")
_PREFIXED: Final = re.compile(r"^(?:web|ext)\+[a-z]+$")


def check_scheme(scheme: object) -> str | None:
    """None when ``scheme`` may be claimed, else why not and what to use instead."""
    if not isinstance(scheme, str):
        return f"a scheme must be a string, got {type(scheme).__name__}: use a name such as 'web+name'"
    if scheme in FORBIDDEN:
        return (f"{scheme!r} has built-in meaning and can never be claimed by an extension; use a safelisted "
                f"scheme or a 'web+' name such as 'web+{re.sub('[^a-z]', '', scheme.lower()) or 'mine'}'")
    if scheme in SAFELIST or _PREFIXED.match(scheme):
        return None
    lowered = scheme.lower()
    if lowered != scheme and (lowered in SAFELIST or _PREFIXED.match(lowered)):
        return f"schemes must be lowercase: use {lowered!r}"
    if scheme.startswith(("web+", "ext+")):
        return ("after 'web+' or 'ext+' a scheme may only contain lowercase ASCII letters (a-z), at least one, "
                f"e.g. '{scheme[:4]}{re.sub('[^a-z]', '', scheme[4:].lower()) or 'name'}'")
    return ("a scheme must be on the browsers' safelist (" + ", ".join(sorted(SAFELIST)) + ") or be 'web+' or "
            f"'ext+' followed by lowercase letters, e.g. 'web+{re.sub('[^a-z]', '', lowered) or 'name'}'")
