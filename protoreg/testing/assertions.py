"""Origin-separation assertions. Each failure explains the rule that was broken."""

from __future__ import annotations

from typing import Any

from yarl import URL

from protoreg.errors import PolicyError
from protoreg.policy import csp
from protoreg.policy.origins import Origin
from protoreg.response import FetchResponse

__tracebackhide__ = True


def _origin(registry: Any, x: str | URL | Origin) -> Origin:
    return x if isinstance(x, Origin) else registry.origin(x)


def assert_same_origin(registry: Any, a: str | URL | Origin, b: str | URL | Origin) -> None:
    """``a`` and ``b`` must be same-origin: the same scheme and host (ports never count for custom schemes)."""
    __tracebackhide__ = True
    oa, ob = _origin(registry, a), _origin(registry, b)
    if not oa.same_origin(ob):
        why = ("one of them is opaque, and an opaque origin is same-origin with nothing"
               if oa.is_opaque or ob.is_opaque else "scheme and host must both match")
        raise AssertionError(f"expected {a} and {b} to be same-origin, but their origins are {oa.serialize()} and "
                             f"{ob.serialize()}: {why}")


def assert_separate_origins(registry: Any, a: str | URL | Origin, b: str | URL | Origin) -> None:
    """``a`` and ``b`` must be different origins (so storage, cookies and DOM access are separated)."""
    __tracebackhide__ = True
    oa, ob = _origin(registry, a), _origin(registry, b)
    if oa.same_origin(ob):
        raise AssertionError(f"expected {a} and {b} to be separate origins, but both are {oa.serialize()}: "
                             "give each site its own host (or scheme) to separate them")


async def assert_cross_origin_blocked(session: Any, from_origin: str, url: str, **fetch_kw: Any) -> PolicyError:
    """A ``cors`` fetch of ``url`` from ``from_origin`` must be blocked (returns the PolicyError)."""
    __tracebackhide__ = True
    try:
        resp = await session.fetch(url, origin=from_origin, mode="cors", **fetch_kw)
    except PolicyError as exc:
        return exc
    resp.close()
    allow = resp.headers.get("Access-Control-Allow-Origin")
    raise AssertionError(
        f"expected the fetch of {url} from {from_origin} to be blocked by CORS, but it was readable "
        f"(status {resp.status}, type {resp.type}"
        + (f", Access-Control-Allow-Origin: {allow}" if allow else "")
        + "). Rule: a cross-origin response is readable only when the handler sends Access-Control-Allow-Origin "
          "matching the initiator; remove that header (or the same-origin relationship) to block it")


async def assert_cross_origin_readable(session: Any, from_origin: str, url: str, **fetch_kw: Any) -> FetchResponse:
    """A ``cors`` fetch of ``url`` from ``from_origin`` must succeed (returns the response)."""
    __tracebackhide__ = True
    try:
        return await session.fetch(url, origin=from_origin, mode="cors", **fetch_kw)  # type: ignore[no-any-return]
    except PolicyError as exc:
        raise AssertionError(f"expected {url} to be readable from {from_origin}, but CORS blocked it: {exc}") from None


def assert_csp_enforced(response: FetchResponse, directive: str, *, allows: str | None = None,
                        forbids: str | None = None) -> None:
    """Some enforced policy of ``response`` must govern ``directive`` (with CSP3 fallbacks).

    ``forbids="'unsafe-inline'"`` additionally requires that inline content is not allowed by all policies;
    ``allows="'unsafe-inline'"`` that it is.
    """
    __tracebackhide__ = True
    policies = csp.parse_response_policies(response.headers.items())
    governing = [s for s in csp.effective_sources(policies, directive) if s is not None]
    shown = "; ".join(p.serialize() for p in policies if p.disposition == "enforce") or "none"
    if not governing and forbids is None and allows is None:
        raise AssertionError(f"expected an enforced CSP to restrict {directive} on {response.url}, but no policy "
                             f"does (enforced policies: {shown}). Add {directive} or default-src to the "
                             "extension's content_security_policy.protocol_pages")
    if forbids == "'unsafe-inline'" and csp.allows_inline(policies, directive):
        raise AssertionError(f"expected inline {directive} to be blocked on {response.url}, but every enforced "
                             f"policy allows it ({shown}). Rule: CSP blocks inline content when any enforced "
                             f"policy's {directive} lacks 'unsafe-inline' (or has a nonce/hash)")
    if allows == "'unsafe-inline'" and not csp.allows_inline(policies, directive):
        raise AssertionError(f"expected inline {directive} to be allowed on {response.url}, but an enforced "
                             f"policy forbids it ({shown}). Policies only add up: every one must allow it")
    if forbids is not None and forbids != "'unsafe-inline'":
        if any(forbids in s or "*" in s for s in governing) and not any(forbids not in s and "*" not in s
                                                                         for s in governing):
            raise AssertionError(f"expected {directive} to forbid {forbids} on {response.url}, but the enforced "
                                 f"policies allow it ({shown})")


def assert_inline_script_blocked(response: FetchResponse) -> None:
    __tracebackhide__ = True
    assert_csp_enforced(response, "script-src-elem", forbids="'unsafe-inline'")


def assert_secure_context(registry: Any, *chain: str | URL | Origin) -> None:
    """The document (first) and every ancestor must be potentially trustworthy."""
    __tracebackhide__ = True
    if not registry.is_secure_context(list(chain)):
        bad = [str(x) for x in chain if not registry.is_potentially_trustworthy(x)]
        raise AssertionError(f"expected a secure context, but {', '.join(bad)} is not potentially trustworthy. "
                             "Rule: every document in the chain must be https, localhost, or a scheme whose manifest "
                             'sets "uriIsTrustworthy": true')
