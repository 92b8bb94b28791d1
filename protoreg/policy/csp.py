"""Content Security Policy Level 3: parse, serialize, and combine policies (pure, no I/O).

Every custom-scheme response carries :data:`BASELINE` plus the extension's policy (manifest
``content_security_policy.protocol_pages``) plus whatever the handler sent. CSP3 enforces *every* policy of a
response, so adding policies can only tighten: a handler can never remove or loosen the baseline or the
extension's policy, because they are separate policies and a resource must pass all of them.

Parsing follows CSP3 "parse a serialized CSP" and "parse a response's Content Security Policies" literally.
The questions the runtime and tests ask of a policy list (:func:`effective_sources`, :func:`allows_inline`)
follow CSP3's "directive fallback list" and "does a source list allow all inline behavior for type".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from protoreg.errors import InvalidPolicy

__all__ = [
    "BASELINE",
    "HEADER_ENFORCE",
    "HEADER_REPORT",
    "Policy",
    "allows_inline",
    "csp_header_items",
    "effective_sources",
    "fallback_list",
    "parse_response_policies",
    "parse_serialized_policy",
    "response_policies",
]

Disposition = Literal["enforce", "report"]
Source = Literal["header", "meta"]
HEADER_ENFORCE: Final = "Content-Security-Policy"
HEADER_REPORT: Final = "Content-Security-Policy-Report-Only"
_WS: Final = "\t\n\f\r "  # ASCII whitespace (Infra)
_WS_RUN: Final = re.compile(r"[\t\n\f\r ]+")
_DISPOSITIONS: Final = ("enforce", "report")
_SOURCES: Final = ("header", "meta")
# A name or value that survives "serialize, send as a header, parse" unchanged: ASCII without whitespace, ";"
# or ",".
_HEADER_SAFE: Final = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x21-\x2b\x2d-\x3a\x3c-\x7f]+")


@dataclass
class Policy:
    """One CSP3 policy: directive name -> source list, in the order the directives appeared."""

    directives: dict[str, list[str]] = field(default_factory=dict)
    disposition: Disposition = "enforce"
    source: Source = "header"

    def serialize(self) -> str:
        """The CSP text: directives as ``name value value``, joined by ``"; "``."""
        return "; ".join(" ".join([name, *values]) for name, values in self.directives.items())

    def copy(self) -> Policy:
        return Policy({name: list(values) for name, values in self.directives.items()}, self.disposition,
                      self.source)

    def __str__(self) -> str:
        return self.serialize()


def _check_kind(disposition: str, source: str) -> None:
    if disposition not in _DISPOSITIONS:
        raise InvalidPolicy(f"CSP disposition {disposition!r} is not one of {_DISPOSITIONS}: a policy is "
                            "either enforced or report-only. Pass disposition='enforce' or 'report'")
    if source not in _SOURCES:
        raise InvalidPolicy(f"CSP source {source!r} is not one of {_SOURCES}: a policy is delivered by a "
                            "header or a <meta> element. Pass source='header' or 'meta'")


def parse_serialized_policy(text: str, *, source: Source = "header",
                            disposition: Disposition = "enforce") -> Policy:
    """CSP3 "parse a serialized CSP".

    Tokens are split on ``;`` and stripped of ASCII whitespace; empty and non-ASCII tokens are skipped; the
    name is lowercased and the first directive of a name wins; the value is split on ASCII whitespace. Never
    raises for any ``text``. A comma is *not* a separator here: use :func:`parse_response_policies` for header
    values.
    """
    _check_kind(disposition, source)
    policy = Policy(disposition=disposition, source=source)
    for token in text.split(";"):
        token = token.strip(_WS)
        if not token or not token.isascii():
            continue
        name, *values = _WS_RUN.split(token)
        name = name.lower()
        if name not in policy.directives:
            policy.directives[name] = values
    return policy


def _header_list_policies(value: str, disposition: Disposition) -> list[Policy]:
    policies = []
    for token in value.split(","):
        policy = parse_serialized_policy(token, source="header", disposition=disposition)
        if policy.directives:
            policies.append(policy)
    return policies


def parse_response_policies(headers: Iterable[tuple[str, str]]) -> list[Policy]:
    """CSP3 "parse a response's Content Security Policies".

    Header names match case-insensitively; the values of all ``Content-Security-Policy`` headers are combined
    and split on commas (each item is one policy), then the same for ``Content-Security-Policy-Report-Only``.
    Policies with no directives are dropped. Enforced policies come first, then report-only ones, each in
    header order.
    """
    enforce: list[str] = []
    report: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-security-policy":
            enforce.append(value)
        elif lowered == "content-security-policy-report-only":
            report.append(value)
    return [*_header_list_policies(",".join(enforce), "enforce"),
            *_header_list_policies(",".join(report), "report")]


#: Applied to every custom-scheme response, under whatever the extension and handler add:
#: - ``object-src 'none'``: no plugins, a classic way to run code outside the page's script policy;
#: - ``base-uri 'self'``: an injected ``<base>`` can't send the page's relative URLs to another origin;
#: - ``frame-ancestors 'self'``: another origin can't frame the site (clickjacking, UI spoofing).
#: It deliberately leaves scripts, styles and connections alone: an extension must be able to allow inline
#: scripts (CSP can only tighten, so a baseline ban could never be lifted), and cross-origin fetches between
#: custom origins are CORS's decision, not CSP's. This object is a copy for inspection:
#: :func:`response_policies` builds its baseline from a private constant, so mutating it changes nothing.
_BASELINE_TEXT: Final = "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
BASELINE: Final = parse_serialized_policy(_BASELINE_TEXT)
_BASELINE_ITEMS: Final = tuple((name, tuple(values)) for name, values in BASELINE.directives.items())


@functools.lru_cache(maxsize=256)
def _extension_items(text: str) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]:
    # The manifest string is read as a header value would be (commas separate policies), because that is what
    # the browser does with the header it becomes; any other reading would let our checks disagree with it.
    return tuple(tuple((n, tuple(v)) for n, v in p.directives.items())
                 for p in _header_list_policies(text, "enforce"))


def _from_items(items: Iterable[tuple[str, tuple[str, ...]]]) -> Policy:
    return Policy({name: list(values) for name, values in items})


def response_policies(extension_policy: str | None,
                      handler_headers: Iterable[tuple[str, str]]) -> list[Policy]:
    """[baseline, the extension's policies (if any), *the handler's policies]: the list a response carries.

    Every enforced policy applies, so the handler's headers can add restrictions but can't replace or loosen
    the baseline or the extension's policy. Each call returns fresh objects the caller may change.
    """
    policies = [_from_items(_BASELINE_ITEMS)]
    if extension_policy:
        policies.extend(_from_items(items) for items in _extension_items(extension_policy))
    policies.extend(parse_response_policies(handler_headers))
    return policies


def csp_header_items(policies: Sequence[Policy]) -> list[tuple[str, str]]:
    """One ``(header name, serialized policy)`` per policy with directives, in order.

    Raises :class:`~protoreg.errors.InvalidPolicy` for a policy (built in code) that a browser would read
    differently from the header: a name or value that is empty, non-ASCII, or contains whitespace, ``;`` or
    ``,``, or an upper-case directive name.
    """
    items = []
    for policy in policies:
        if not policy.directives:
            continue
        for name, values in policy.directives.items():
            bad = next((part for part in values if not _HEADER_SAFE.fullmatch(part)), None)
            if bad is None and (name != name.lower() or not _HEADER_SAFE.fullmatch(name)):
                bad = name
            if bad is not None:
                raise InvalidPolicy(
                    f"CSP directive {name!r} {values!r} can't be sent as a header: {bad!r} is empty, "
                    "non-ASCII, contains whitespace, ';' or ',', or is an upper-case name, so a browser "
                    "would parse a different policy. Build policies with parse_serialized_policy() or give "
                    "each source expression as its own list item")
        header = HEADER_ENFORCE if policy.disposition == "enforce" else HEADER_REPORT
        items.append((header, policy.serialize()))
    return items


# CSP3 "directive fallback list" (§ 6.8.3), plus the non-fetch directives, which have no fallback.
_FALLBACKS: Final[dict[str, tuple[str, ...]]] = {
    "script-src-elem": ("script-src-elem", "script-src", "default-src"),
    "script-src-attr": ("script-src-attr", "script-src", "default-src"),
    "style-src-elem": ("style-src-elem", "style-src", "default-src"),
    "style-src-attr": ("style-src-attr", "style-src", "default-src"),
    "worker-src": ("worker-src", "child-src", "script-src", "default-src"),
    "connect-src": ("connect-src", "default-src"),
    "manifest-src": ("manifest-src", "default-src"),
    "object-src": ("object-src", "default-src"),
    "frame-src": ("frame-src", "child-src", "default-src"),
    "fenced-frame-src": ("fenced-frame-src", "frame-src", "child-src", "default-src"),
    "media-src": ("media-src", "default-src"),
    "font-src": ("font-src", "default-src"),
    "img-src": ("img-src", "default-src"),
    # Not effective directives themselves, but what their own value falls back to when asked about directly.
    "script-src": ("script-src", "default-src"),
    "style-src": ("style-src", "default-src"),
    "child-src": ("child-src", "default-src"),
}


def fallback_list(directive: str) -> tuple[str, ...]:
    """The directives consulted, in order, for ``directive`` (CSP3 "directive fallback list")."""
    directive = directive.lower()
    return _FALLBACKS.get(directive, (directive,))


def effective_sources(policies: Iterable[Policy], directive: str) -> list[list[str] | None]:
    """For each enforced policy, the source list governing ``directive``, or None where it isn't restricted.

    The governing list is the first directive of :func:`fallback_list` the policy has. Report-only policies
    are skipped, since they never block.
    """
    order = fallback_list(directive)
    out: list[list[str] | None] = []
    for policy in policies:
        if policy.disposition == "enforce":
            out.append(next((policy.directives[name] for name in order if name in policy.directives), None))
    return out


_NONCE_OR_HASH: Final = re.compile(r"'(?:nonce|sha256|sha384|sha512)-[A-Za-z0-9+/_-]+={0,2}'", re.IGNORECASE)
_SCRIPT_DIRECTIVES: Final = ("script-src-elem", "script-src-attr", "script-src", "worker-src")


def _allows_all_inline(sources: list[str], *, script: bool) -> bool:
    """CSP3 "does a source list allow all inline behavior for type"."""
    allow = False
    for expression in sources:
        if _NONCE_OR_HASH.fullmatch(expression):
            return False
        lowered = expression.lower()
        if script and lowered == "'strict-dynamic'":
            return False
        if lowered == "'unsafe-inline'":
            allow = True
    return allow


def allows_inline(policies: Iterable[Policy], directive: str = "script-src-elem") -> bool:
    """Whether every enforced policy allows inline content for ``directive`` without a nonce or hash.

    A policy allows it when the governing source list has ``'unsafe-inline'`` and no nonce or hash (nor
    ``'strict-dynamic'`` for scripts) cancelling it, or when nothing in its fallback list restricts
    ``directive``.
    """
    script = directive.lower() in _SCRIPT_DIRECTIVES
    return all(sources is None or _allows_all_inline(sources, script=script)
               for sources in effective_sources(policies, directive))
