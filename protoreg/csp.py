"""Content Security Policy Level 3: parse, serialize, and combine policies (pure, no I/O).

Every custom-scheme response carries :data:`BASELINE` plus the extension's policy (manifest
``content_security_policy.protocol_pages``) plus whatever the handler sent. CSP3 enforces *every* policy of a
response, so adding policies can only tighten: a handler can never remove or loosen the baseline or the extension's
policy, because they are separate policies and a resource must pass all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "BASELINE",
    "Policy",
    "allows_inline",
    "csp_header_items",
    "effective_sources",
    "parse_response_policies",
    "parse_serialized_policy",
    "response_policies",
]

_WS: Final = "\t\n\f\r "
Disposition = Literal["enforce", "report"]
Source = Literal["header", "meta"]
HEADER_ENFORCE: Final = "Content-Security-Policy"
HEADER_REPORT: Final = "Content-Security-Policy-Report-Only"


@dataclass
class Policy:
    directives: dict[str, list[str]] = field(default_factory=dict)
    disposition: Disposition = "enforce"
    source: Source = "header"

    def serialize(self) -> str:
        return "; ".join(" ".join([name, *values]) for name, values in self.directives.items())

    def __str__(self) -> str:
        return self.serialize()


def _split_ws(text: str) -> list[str]:
    out, cur = [], []
    for ch in text:
        if ch in _WS:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def parse_serialized_policy(text: str, *, source: Source = "header", disposition: Disposition = "enforce") -> Policy:
    """CSP3 "parse a serialized CSP": first directive of a name wins; non-ASCII directives are skipped."""
    policy = Policy(disposition=disposition, source=source)
    for token in text.split(";"):
        token = token.strip(_WS)
        if not token or not token.isascii():
            continue
        parts = _split_ws(token)
        name = parts[0].lower()
        if name in policy.directives:
            continue
        policy.directives[name] = parts[1:]
    return policy


def parse_response_policies(headers: Iterable[tuple[str, str]]) -> list[Policy]:
    """CSP3 "parse a response's Content Security Policies": enforced policies first, then report-only ones."""
    items = list(headers)
    policies: list[Policy] = []
    for header, disposition in ((HEADER_ENFORCE, "enforce"), (HEADER_REPORT, "report")):
        values = [v for n, v in items if n.lower() == header.lower()]
        for token in ",".join(values).split(","):
            policy = parse_serialized_policy(token, source="header", disposition=disposition)  # type: ignore[arg-type]
            if policy.directives:
                policies.append(policy)
    return policies


#: Applied to every custom-scheme response, under whatever the extension and handler add:
#: - ``object-src 'none'``: no plugins, a classic way to escape a page's policy;
#: - ``base-uri 'self'``: an injected ``<base>`` can't redirect the page's relative URLs to another origin;
#: - ``frame-ancestors 'self'``: another origin can't frame the site (clickjacking, UI spoofing).
#: It deliberately leaves scripts, styles and connections alone: an extension must be able to allow inline scripts
#: (CSP can only tighten, so a baseline ban could never be lifted), and cross-origin fetches between custom
#: origins are CORS's decision, not CSP's.
BASELINE: Final = parse_serialized_policy("object-src 'none'; base-uri 'self'; frame-ancestors 'self'")


def response_policies(extension_policy: str | None, handler_headers: Sequence[tuple[str, str]]) -> list[Policy]:
    """[baseline, the extension's policy if any, *the handler's policies]: all enforced together.

    The returned BASELINE and extension policies are shared objects: treat them as read-only.
    """
    policies = [BASELINE]
    if extension_policy:
        ext = _parse_cached(extension_policy)
        if ext.directives:
            policies.append(ext)
    if any(n.lower().startswith("content-security-policy") for n, _ in handler_headers):
        policies.extend(parse_response_policies(handler_headers))
    return policies


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> Policy:
    return parse_serialized_policy(text)


def csp_header_items(policies: Sequence[Policy]) -> list[tuple[str, str]]:
    """One header per policy, in order (a policy's own text never contains a comma-separated second policy)."""
    return [(HEADER_ENFORCE if p.disposition == "enforce" else HEADER_REPORT, p.serialize())
            for p in policies if p.directives]


# CSP3 "get the effective directive" fallback lists for the directives a test or gateway asks about.
_FALLBACKS: Final[dict[str, tuple[str, ...]]] = {
    "script-src-elem": ("script-src-elem", "script-src", "default-src"),
    "script-src-attr": ("script-src-attr", "script-src", "default-src"),
    "script-src": ("script-src", "default-src"),
    "style-src-elem": ("style-src-elem", "style-src", "default-src"),
    "style-src-attr": ("style-src-attr", "style-src", "default-src"),
    "style-src": ("style-src", "default-src"),
    "worker-src": ("worker-src", "child-src", "script-src", "default-src"),
    "frame-src": ("frame-src", "child-src", "default-src"),
    "child-src": ("child-src", "default-src"),
}
_FETCH_DIRECTIVES: Final = ("connect-src", "font-src", "img-src", "manifest-src", "media-src", "object-src")


def effective_sources(policies: Iterable[Policy], directive: str) -> list[list[str] | None]:
    """For each enforced policy, the source list that governs ``directive`` (with fallbacks), or None."""
    order = _FALLBACKS.get(directive) or ((directive, "default-src") if directive in _FETCH_DIRECTIVES
                                          else (directive,))
    out: list[list[str] | None] = []
    for p in policies:
        if p.disposition != "enforce":
            continue
        out.append(next((p.directives[name] for name in order if name in p.directives), None))
    return out


def _list_allows_inline(sources: list[str]) -> bool:
    lowered = [s.lower() for s in sources]
    if "'unsafe-inline'" not in lowered:
        return False
    # A nonce or hash (and 'strict-dynamic' for scripts) makes 'unsafe-inline' ignored (CSP3 "does a source list
    # allow all inline behavior").
    return not any(s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) or s == "'strict-dynamic'"
                   for s in lowered)


def allows_inline(policies: Iterable[Policy], directive: str = "script-src-elem") -> bool:
    """Whether every enforced policy allows inline content for ``directive`` (no nonce or hash needed)."""
    return all(sources is None or _list_allows_inline(sources) for sources in effective_sources(policies, directive))
