"""The dashboard's permission panels: pending prompts, decisions with allow/ask/deny/revoke controls, the audit log.

Plain HTML forms, no script (the dashboard's CSP allows none). State-changing requests (``POST /_protoreg/decide``,
``POST /_protoreg/prompt``) must pass three checks, in this order, before the body is even read:

1. ``Origin`` is present and is exactly the dashboard's own origin (``http://localhost:PORT``; the bare host only
   accepts localhost names, so a DNS-rebound name never reaches here). A custom origin's page
   (``http://a.web-x.s….localhost:PORT``), another port of localhost, or a request without Origin is refused.
2. ``Sec-Fetch-Site``, when the browser sends it, is ``same-origin``.
3. The form's ``token`` equals the per-session secret (made when the dashboard first renders for a Session,
   embedded in every form, compared in constant time).

Refusals are 403 pages, counted in :func:`state` (``rejected``) and logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any, Final

from aiohttp import web

from protoreg.gateway.hosts import parse_host_header
from protoreg.gateway.pages import STYLE, error_page
from protoreg.permissions import DecisionError, Grantee, describe_expiry

__all__ = ["DASHBOARD_CSP", "POST_PATHS", "dashboard_headers", "handle_post", "panels", "state"]

log = logging.getLogger("protoreg.gateway.grants")

POST_PATHS: Final = ("/_protoreg/decide", "/_protoreg/prompt")

EXTRA_STYLE: Final = (
    "body{max-width:64rem}h2{margin-top:2rem;border-bottom:2px solid #eee;padding-bottom:.2rem}"
    ".pill{display:inline-block;padding:0 .55rem;border-radius:1rem;font-size:.8rem;font-weight:600;"
    "text-transform:uppercase;letter-spacing:.03em}.allow{background:#dff3e4;color:#0d5a1c}"
    ".deny{background:#fde3e1;color:#8c1410}.prompt{background:#fff1cc;color:#6b4b00}"
    ".src{display:block;color:#555;font-size:.82rem;margin-top:.15rem}"
    "form.ctl{display:flex;gap:.3rem;flex-wrap:nowrap;align-items:center;margin:0}td.change{white-space:nowrap}"
    "button{font:inherit;font-size:.82rem;padding:.15rem .6rem;border:1px solid #bbb;border-radius:4px;"
    "background:#fafafa;cursor:pointer}button:hover{background:#eee}button.go{border-color:#2e7d32;color:#1b5e20}"
    "button.stop{border-color:#c62828;color:#b71c1c}button[disabled]{opacity:.4;cursor:default}"
    "select,input{font:inherit;font-size:.82rem;padding:.1rem .2rem}"
    ".prompt-card{border:1px solid #e6c200;background:#fffbea;border-radius:6px;padding:.6rem .9rem;margin:.5rem 0}"
    ".prompt-card p{margin:.1rem 0 .5rem}.muted{color:#666;font-size:.85rem}td.reason{font-size:.85rem;"
    "max-width:24rem}table.audit td{font-size:.88rem}form.filter{display:flex;gap:.5rem;align-items:center;"
    "flex-wrap:wrap;margin:.4rem 0}")


def _hash(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


#: The dashboard's policy: no script at all; its two inline styles pinned by hash; forms post to itself only.
DASHBOARD_CSP: Final = (f"default-src 'none'; style-src 'sha256-{_hash(STYLE)}' 'sha256-{_hash(EXTRA_STYLE)}'; "
                        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def dashboard_headers() -> dict[str, str]:
    return {"Content-Security-Policy": DASHBOARD_CSP, "X-Content-Type-Options": "nosniff",
            # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on the dashboard's own
            # form posts; links to custom origins still send no Referer
            "Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


@dataclass
class DashboardState:
    token: str
    rejected: int = 0
    accepted: int = 0


_STATES: weakref.WeakKeyDictionary[Any, DashboardState] = weakref.WeakKeyDictionary()


def state(session: Any) -> DashboardState:
    """The dashboard's per-Session state: the form token (a fresh secret per Session) and refusal counts."""
    st = _STATES.get(session)
    if st is None:
        st = _STATES[session] = DashboardState(secrets.token_urlsafe(32))
    return st


# -- rendering -----------------------------------------------------------------------------------------------------
def _when(t: float, now: float) -> str:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = max(0, now - t)
    rel = (f"{ago:.0f} s ago" if ago < 90 else f"{ago / 60:.0f} min ago" if ago < 5400
           else f"{ago / 3600:.0f} h ago" if ago < 129600 else f"{ago / 86400:.0f} days ago")
    return f'{escape(stamp)}<br><span class=muted>{rel}</span>'


def _hidden(**fields: str) -> str:
    return "".join(f'<input type=hidden name={k} value="{escape(v)}">' for k, v in fields.items())


def _prompts_html(manager: Any, token: str, now: float) -> str:
    pending = manager.pending()
    if not pending:
        return "<p>No prompt is waiting. Extensions whose permission is set to <em>ask</em> appear here when " \
               "they use it (reload the page to see new ones).</p>"
    out = []
    for req in pending:
        left = max(0, req.created + req.timeout - now)
        buttons = "".join(
            f'<button class={"go" if v.startswith("allow") else "stop"} name=answer value="{v}">{label}</button>'
            for v, label in (("allow:once", "Allow once"), ("allow:session", "Allow for this session"),
                             ("allow:never", "Always allow"), ("deny:once", "Deny"), ("deny:never", "Always deny")))
        out.append(
            f'<div class=prompt-card data-prompt="{escape(req.id)}"><p><strong>{escape(req.extension)}</strong> '
            f"asks to use <code>{escape(req.permission)}</code> ({escape(req.capability)} "
            f"<code>{escape(req.target)}</code>) for a page of <code>{escape(req.origin)}</code>.</p>"
            f"<p class=muted>asked {now - req.created:.0f} s ago; denied automatically in {left:.0f} s; "
            f"{req.waiting} call{'s' if req.waiting != 1 else ''} waiting</p>"
            f'<form method=post action="/_protoreg/prompt" class=ctl>{_hidden(token=token, id=req.id)}{buttons}'
            "</form></div>")
    return "".join(out)


_EXPIRY_OPTIONS = (("never", "until changed"), ("session", "for this session"), ("1h", "for 1 hour"),
                   ("1d", "for 1 day"), ("7d", "for 7 days"))


def _grants_html(registry: Any, manager: Any, token: str) -> str:
    from protoreg.sandboxes import with_sandboxes

    rows = []
    for ext in with_sandboxes(registry.extensions.values()):  # named sandboxes have their own decisions
        grantee = Grantee.of(ext)
        decisions = manager.decisions(grantee)
        if not decisions:
            rows.append(f"<tr><td><code>{escape(ext.id)}</code></td><td colspan=3 class=muted>requests no "
                        "permission</td></tr>")
            continue
        for i, (perm, dec) in enumerate(decisions.items()):
            granted = perm in grantee.granted
            who = f"<code>{escape(ext.id)}</code>" if i == 0 else ""
            expiry = describe_expiry(dec.expires)
            note = f"; {escape(dec.note)}" if dec.note else ""
            shown = {"allow": "allowed", "deny": "denied", "prompt": "ask"}[dec.state]
            by = {"user": "by the user", "store": "by the store", "default": "by default"}[dec.source]
            status = (f'<span class="pill {dec.state}">{shown}</span><span class=src>{by}, '
                      f"{escape(expiry)}{note}</span>")
            if granted:
                options = "".join(f'<option value="{v}">{label}</option>' for v, label in _EXPIRY_OPTIONS)
                controls = (
                    f'<form method=post action="/_protoreg/decide" class=ctl data-extension="{escape(ext.id)}" '
                    f'data-permission="{escape(perm)}">'
                    f"{_hidden(token=token, extension=ext.id, permission=perm)}"
                    f'<select name=expires aria-label="expires">{options}</select>'
                    '<button class=go name=action value=allow>Allow</button>'
                    "<button name=action value=prompt>Ask</button>"
                    '<button class=stop name=action value=deny>Deny</button>'
                    '<button class=stop name=action value=revoke>Revoke</button></form>')
            else:
                controls = "<span class=muted>beyond the store ceiling: can't be allowed here</span>"
            rows.append(f"<tr><td>{who}</td><td><code>{escape(perm)}</code></td><td>{status}</td>"
                        f"<td class=change>{controls}</td></tr>")
    if not rows:
        return "<p>No extensions.</p>"
    return ("<table class=grants><tr><th>extension</th><th>permission</th><th>decision</th><th>change</th></tr>"
            + "".join(rows) + "</table>")


def _audit_html(request: web.Request, registry: Any, audit: Any, now: float) -> str:
    from protoreg.sandboxes import with_sandboxes

    q = request.query
    extension = q.get("extension") or None
    permission = q.get("permission") or None
    denied = q.get("denied") == "1"
    since = {"1h": 3600, "1d": 86400, "7d": 604800}.get(q.get("since", ""))
    ext_opts = "".join(f'<option value="{escape(e)}"{" selected" if e == extension else ""}>{escape(e)}</option>'
                       for e in sorted(x.id for x in with_sandboxes(registry.extensions.values())))
    since_opts = "".join(f'<option value="{v}"{" selected" if q.get("since") == v else ""}>{label}</option>'
                         for v, label in (("", "any time"), ("1h", "last hour"), ("1d", "last day"),
                                          ("7d", "last 7 days")))
    filt = (f'<form method=get action="/" class=filter><select name=extension aria-label=extension>'
            f'<option value="">every extension</option>{ext_opts}</select>'
            f'<input name=permission placeholder="permission or capability" value="{escape(permission or "")}">'
            f'<label><input type=checkbox name=denied value=1{" checked" if denied else ""}> denied only</label>'
            f"<select name=since aria-label=since>{since_opts}</select><button>Filter</button></form>")
    records = audit.records(extension=extension, permission=permission, decision="denied" if denied else None,
                            since=now - since if since else None, limit=100, newest_first=True)
    if not records:
        return filt + "<p>No matching capability call.</p>"
    rows = "".join(
        f"<tr><td>{_when(r.time, now)}</td><td><code>{escape(r.extension)}</code><br>"
        f"<span class=muted>{escape(r.origin)}</span></td><td>{escape(r.capability)} <code>{escape(r.target)}</code>"
        + (f"<br><span class=muted>{escape(r.permission)}</span>" if r.permission else "")
        + f'</td><td><span class="pill {"allow" if r.decision == "allowed" else "deny"}">{escape(r.decision)}</span>'
        f"</td><td class=reason>{escape(r.reason)}</td></tr>" for r in records)
    return (filt + "<table class=audit><tr><th>time</th><th>extension</th><th>call</th><th>decision</th>"
            f"<th>how / why</th></tr>{rows}</table>")


def status(registry: Any, session: Any) -> dict[str, Any]:
    """Decisions per extension and pending prompts, JSON-ready (part of /_protoreg/status.json; no token)."""
    manager = getattr(session, "permissions", None)
    if manager is None:
        return {"decisions": {}, "prompts": []}
    from protoreg.sandboxes import with_sandboxes

    return {"decisions": {ext.id: {p: d.to_json() for p, d in manager.decisions(ext).items()}
                          for ext in with_sandboxes(registry.extensions.values())},
            "prompts": [{"id": r.id, "extension": r.extension, "permission": r.permission,
                         "capability": r.capability, "target": r.target, "origin": r.origin, "created": r.created,
                         "waiting": r.waiting} for r in manager.pending()]}


def panels(request: web.Request, registry: Any, session: Any) -> dict[str, str]:
    """HTML of the "prompts", "grants" and "audit" panels."""
    manager = session.permissions
    token = state(session).token
    now = time.time()
    return {"prompts": _prompts_html(manager, token, now), "grants": _grants_html(registry, manager, token),
            "audit": _audit_html(request, registry, session.audit, now)}


# -- state-changing requests ---------------------------------------------------------------------------------------
def _trust_log(manager: Any, event: str, **fields: Any) -> None:
    """Also record the user's decision in the profile's trust log (audit.log), like protoreg grants does."""
    if manager.path is None:
        return
    from protoreg.profile import Profile

    try:
        Profile(manager.path).audit(event, **fields)
    except OSError as exc:
        log.warning("could not write the trust log: %s", exc)


def _refusal(request: web.Request) -> str | None:
    """Why this POST is not from the dashboard's own page (None: it is, as far as Origin and Fetch metadata tell)."""
    target = parse_host_header(request.headers.get("Host", ""))
    if target is None or target.scheme is not None:
        return "this address does not serve the dashboard"
    own = f"http://{target.authority}"
    origin = request.headers.get("Origin")
    if origin is None:
        return ("the request has no Origin header; the dashboard accepts changes only from its own page "
                f"({own}) in a browser that sends Origin")
    if origin != own:
        return (f"the request comes from {origin}, not from the dashboard ({own}); another site (a custom "
                "origin, another port of localhost) can never change decisions")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"the browser marks the request as {site}, not same-origin"
    return None


async def handle_post(request: web.Request, registry: Any, session: Any) -> web.StreamResponse:
    st = state(session)
    if request.method != "POST":
        return error_page(405, f"{request.path} takes the dashboard's forms (POST) only.")
    why = _refusal(request)
    if why is None:
        form = await request.post()
        sent = str(form.get("token", ""))
        if not hmac.compare_digest(sent.encode(), st.token.encode()):
            why = "the form's token is missing or wrong (reload the dashboard and try again)"
    if why is not None:
        st.rejected += 1
        log.warning("refused a change from %s: %s", request.headers.get("Origin"), why)
        return error_page(403, f"Refused: {why}.", links=[("/", "the dashboard")])
    manager = session.permissions
    try:
        if request.path == "/_protoreg/decide":
            from protoreg.sandboxes import lookup

            ext = lookup(registry.extensions, str(form.get("extension", "")))  # an extension or a named sandbox
            if ext is None:
                return error_page(404, f"No extension {form.get('extension')!r} is installed.",
                                  links=[("/", "the dashboard")])
            perm, action = str(form.get("permission", "")), str(form.get("action", ""))
            if action == "revoke":
                manager.revoke(ext, perm)
            else:
                manager.decide(ext, perm, action, expires=str(form.get("expires") or "never"))
            log.info("dashboard: %s %s for %s", action, perm, ext.id)
            _trust_log(manager, "decision", id=ext.id, permission=perm, state="deny" if action == "revoke" else action,
                       expires=str(form.get("expires") or "never"), how=f"dashboard {action}")
        else:
            decision, _, expires = str(form.get("answer", "")).partition(":")
            if not manager.answer(str(form.get("id", "")), decision, expires or "once"):
                return error_page(409, "That prompt is no longer pending: it was answered or it timed out.",
                                  links=[("/", "the dashboard")])
    except DecisionError as exc:
        return error_page(400, str(exc), links=[("/", "the dashboard")])
    st.accepted += 1
    raise web.HTTPSeeOther(location="/#grants")
