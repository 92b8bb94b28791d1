"""The dashboard at ``http://localhost:PORT/``: extensions, schemes, icons, trust, grants, sandbox, workers, audit.

It is a different origin from every custom site (the bare host), sends no CORS headers, and is served with a strict
CSP (no script at all, one hash-pinned inline style, images only from itself).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

from protoreg.broker import Grants
from protoreg.gateway import grants as grant_panels
from protoreg.gateway.hosts import GatewayTarget, LabelTooLong, to_gateway_url
from protoreg.gateway.pages import FAVICON_SVG, FAVICON_URL, STYLE, error_page, favicon_link, page_headers
from protoreg.sandboxes import sandbox_extension, sandbox_id

__all__ = ["asset", "render", "status"]

_ASSET_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"  # an SVG opened directly runs nothing
_ICON_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".gif": "image/gif",
               ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


@functools.lru_cache(maxsize=1)
def _sandbox_report() -> dict[str, Any]:
    """What the machine offers, probed once per process: probe() forks, which a threaded server shouldn't do
    on every page load, and the kernel's layers don't change while it runs."""
    try:
        from protoreg.sandbox import probe
    except ImportError:
        return {"layers": [{"name": "sandbox", "active": False,
                            "detail": "protoreg.sandbox is not available in this build"}]}
    return probe().to_dict()


def status(registry: Any, session: Any) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data (also served at /_protoreg/status.json)."""
    exts = []
    for ext in registry.extensions.values():
        handlers = []
        for h in ext.manifest.protocol_handlers:
            active = registry.schemes.get(h.protocol)
            handlers.append({"scheme": h.protocol, "name": h.name, "trustworthy": bool(h.uriIsTrustworthy),
                             "script": h.uriHandlerScript, "template": h.uriTemplate, "icon": h.uriIcon,
                             "active": active is not None and active.extension.id == ext.id})
        csp = ext.manifest.content_security_policy
        exts.append({"id": ext.id, "name": ext.name, "version": ext.version, "digest": ext.digest,
                     "handlers": handlers, "permissions": list(ext.manifest.permissions or ()),
                     "host_permissions": list(ext.manifest.host_permissions or ()),
                     "csp": getattr(csp, "protocol_pages", None) if csp is not None else None,
                     # trust (docs/trust.md): where the code came from, and the effective grants the broker enforces
                     "source": getattr(ext, "provenance", "unsigned, development")
                     + (f"; DISABLED: {registry.disabled[ext.id]}" if ext.id in getattr(registry, "disabled", {})
                        else "")})
        if getattr(ext, "granted_permissions", None) is not None or getattr(ext, "granted_hosts", None) is not None:
            grants = Grants.from_extension(ext)  # the handlers' own (without the sandboxes' grants)
            exts[-1]["permissions"] = sorted(grants.permissions)
            exts[-1]["host_permissions"] = [p.text for p in grants.hosts]
        exts[-1]["content_scripts"] = [{"matches": list(c.matches), "files": [*c.js, *c.css], "run_at": c.run_at}
                                       for c in getattr(ext.manifest, "content_scripts", None) or ()]
        exts[-1]["response_filters"] = [{"matches": list(f.matches), "script": f.script}
                                        for f in getattr(ext.manifest, "response_filters", None) or ()]
        exts[-1]["sandboxes"] = []
        for name, spec in (getattr(ext.manifest, "sandboxes", None) or {}).items():  # protoreg/sandboxes.py
            grants = Grants.from_extension(sandbox_extension(ext, name))
            exts[-1]["sandboxes"].append({"name": name, "id": sandbox_id(ext.id, name), "script": spec.script,
                                          "permissions": sorted(grants.permissions),
                                          "host_permissions": [p.text for p in grants.hosts]})
    audit = getattr(session, "audit", None)
    cache = getattr(session, "cache", None)
    return {"extensions": exts, "sandbox": _sandbox_report(), "workers": session.workers.stats(),
            "response_cache": cache.stats() if cache is not None else None,
            "audit": [dict(r) for r in audit.recent(50)] if audit is not None else None,
            **grant_panels.status(registry, session)}


def _cache_note(stats: dict[str, int] | None) -> str:
    if stats is None:
        return "<p class=note>The response cache is off (<code>response_cache_bytes=0</code>).</p>"
    return (f"<p class=note>Response cache: {stats['entries']} answers, {stats['bytes'] / 2**20:.1f} of "
            f"{stats['max_bytes'] / 2**20:.0f} MiB, {stats['hits']} hits and {stats['misses']} misses. It keeps only "
            "answers a handler marks <code>immutable</code> (ipfs content) and repeats them without a worker "
            "round trip; revocation, CORS, CSP, filters and content scripts still apply to every answer.</p>")


def _badge(ok: bool, yes: str, no: str) -> str:
    return f'<span class={"ok" if ok else "no"}>{escape(yes if ok else no)}</span>'


def _utc(value: Any) -> str:
    """An audit record's epoch time as a readable UTC time (other values unchanged)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            pass
    return str(value)


def _trust_cell(trustworthy: bool) -> str:
    """Two facts: protoreg's decision for the custom origin, and what the browser decides for the gateway origin."""
    custom = _badge(trustworthy, "trustworthy", "not trustworthy")
    return (f'<span title="uriIsTrustworthy: {str(trustworthy).lower()}">protoreg: {custom}</span><br>'
            "<span class=note>browser: secure context</span>")


async def render(request: web.Request, registry: Any, session: Any, target: GatewayTarget) -> web.Response:
    data = status(registry, session)
    examples: dict[str, str] = request.app.get("protoreg_examples", {}) if hasattr(request.app, "get") else {}
    ext_rows, grant_rows = [], []
    for ext in data["extensions"]:
        for h in ext["handlers"]:
            icon = (f'<img alt="" src="/_protoreg/icon/{escape(ext["id"])}/{escape(h["scheme"])}">'
                    if h["icon"] else "")
            example = examples.get(h["scheme"], f'{h["scheme"]}://example/')
            try:
                owner = registry.lookup(h["scheme"]).extension.id
                link = str(to_gateway_url(registry.resolve(example), target.authority, owner))
                link_html = f'<a href="{escape(link)}">{escape(example)}</a>'
            except (LabelTooLong, ValueError, LookupError):
                link_html = escape(example)
            ext_rows.append(
                f"<tr><td>{icon} <code>{escape(h['scheme'])}</code>"
                f"{'' if h['active'] else ' (claimed by another extension)'}</td>"
                f"<td>{escape(ext['name'])} {escape(ext['version'])}<br><code>{escape(ext['id'])}</code>"
                f"<br>{escape(ext['source'])}</td>"
                f"<td>{_trust_cell(h['trustworthy'])}</td>"
                f"<td>{link_html}</td></tr>")
        grants = ", ".join(escape(p) for p in ext["permissions"] + ext["host_permissions"]) or "none"
        grant_rows.append(f"<tr><td><code>{escape(ext['id'])}</code></td><td>{grants}</td>"
                          f"<td><code>{escape(ext['csp'] or '(baseline only)')}</code></td></tr>")
        for kind, entries in (("content scripts", ext.get("content_scripts", ())),
                              ("response filter", ext.get("response_filters", ()))):
            for e in entries:
                what = ", ".join(e.get("files") or [e.get("script", "")])
                grant_rows.append(f"<tr><td><code>{escape(ext['id'])}</code><br><span class=note>{kind} "
                                  f"{escape(what)}</span></td><td>on {escape(', '.join(e['matches']))}</td>"
                                  "<td></td></tr>")
        for sb in ext.get("sandboxes", ()):
            grants = ", ".join(escape(p) for p in sb["permissions"] + sb["host_permissions"]) or "none"
            grant_rows.append(f"<tr><td><code>{escape(sb['id'])}</code><br><span class=note>sandbox, "
                              f"{escape(sb['script'])}</span></td><td>{grants}</td><td></td></tr>")
    layer_rows = [f"<tr><td>{escape(str(layer.get('name')))}</td>"
                  f"<td>{_badge(bool(layer.get('active')), 'active', 'inactive')}</td>"
                  f"<td>{escape(str(layer.get('detail', '')))}</td></tr>" for layer in data["sandbox"]["layers"]]
    worker_rows = []
    for pool in data["workers"]:
        for w in pool["workers"]:
            rss = f"{w['rss'] / 2**20:.1f} MiB" if w.get("rss") else "?"
            worker_rows.append(f"<tr><td><code>{escape(pool['extension'])}</code></td><td>{w['pid']}</td>"
                               f"<td>{escape(w['state'])}</td><td>{rss}</td><td>{w['requests_served']}</td>"
                               f"<td>{w['in_flight']}</td></tr>")
    panels = grant_panels.panels(request, registry, session)  # prompts, decisions, audit (gateway/grants.py)
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>protoreg gateway</title>{favicon_link()}"
        f"<style>{STYLE}</style><style>{grant_panels.EXTRA_STYLE}</style>"
        f"<div class=brand>{FAVICON_SVG}<span>protoreg</span></div>"
        "<h1>protoreg gateway</h1><p>Each custom site is served from its own origin "
        f"<code>http://&lt;host&gt;.&lt;scheme&gt;.{escape(target.authority)}/</code>.</p>"
        "<h2>Extensions and schemes</h2>"
        + _table(["scheme", "extension", "trust", "example"], ext_rows, "No extensions are installed.")
        + "<p class=note>The trust column holds two decisions. <b>protoreg's</b> is for the custom origin "
        "(<code>ipfs://&lt;cid&gt;</code>): the W3C Secure Contexts algorithm, where only schemes declaring "
        "<code>uriIsTrustworthy: true</code> count as authenticated; it is what <code>Session.fetch</code> reports "
        "(<code>secure_context</code>) and what embedders enforce. <b>The browser's</b> is for the gateway origin "
        "it actually loads (<code>http://&lt;host&gt;.&lt;scheme&gt;.localhost</code>): Chromium and Firefox treat "
        "every <code>*.localhost</code> origin as potentially trustworthy, so in the browser every gateway page is "
        "a secure context, whatever the scheme declares. Secure-context-only APIs therefore work on gateway pages "
        "of untrustworthy schemes too; don't rely on the browser to withhold them.</p>"
        + f"<h2 id=prompts>Pending prompts</h2>{panels['prompts']}"
        + f"<h2 id=grants>Permission grants</h2>{panels['grants']}"
        + "<h2>Effective grants and content security policy</h2>"
        + _table(["extension", "grants", "content security policy"], grant_rows, "No extensions.")
        + "<h2>Sandbox layers</h2>" + _table(["layer", "state", "detail"], layer_rows, "No report.")
        + "<h2>Workers</h2>"
        + _table(["extension", "pid", "state", "RSS", "served", "in flight"], worker_rows,
                 "No worker is running (they start on the first request).")
        + _cache_note(data["response_cache"])
        + f"<h2 id=audit>Audit log</h2>{panels['audit']}"
    )
    return web.Response(text=body, content_type="text/html", headers=grant_panels.dashboard_headers())


def _table(columns: list[str], rows: list[str], empty: str = "") -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(r if r.startswith("<tr>") else f"<tr>{r}</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


async def asset(request: web.Request, registry: Any, session: Any) -> web.StreamResponse:
    if request.path in grant_panels.POST_PATHS:  # allow/deny/revoke, prompt answers (origin- and token-checked)
        return await grant_panels.handle_post(request, registry, session)
    parts = request.path.split("/")  # "", "_protoreg", kind, ...
    if request.path == "/_protoreg/status.json":
        return web.json_response(status(registry, session), headers=page_headers())
    if request.path == FAVICON_URL:
        headers = {**page_headers(), "Content-Security-Policy": _ASSET_CSP, "Cache-Control": "public, max-age=86400"}
        return web.Response(body=FAVICON_SVG.encode(), content_type="image/svg+xml", headers=headers)
    if len(parts) == 5 and parts[2] == "icon":
        ext = registry.extensions.get(parts[3])
        handler = next((h for h in ext.manifest.protocol_handlers if h.protocol == parts[4]), None) if ext else None
        if handler is None or not handler.uriIcon:
            return error_page(404, f"No icon for {parts[4]!r} in extension {parts[3]!r}.")
        path = (Path(ext.root) / handler.uriIcon).resolve()
        if not path.is_relative_to(Path(ext.root).resolve()) or not path.is_file():
            return error_page(404, f"The icon {handler.uriIcon!r} of {ext.id} is not inside its bundle.")
        ctype = _ICON_TYPES.get(path.suffix.lower())
        if ctype is None:  # never serve an "icon" as HTML or script on the dashboard's origin
            return error_page(404, f"The icon {handler.uriIcon!r} of {ext.id} is not an image file "
                                   f"({', '.join(sorted(_ICON_TYPES))}), so the dashboard does not serve it.")
        headers = {**page_headers(), "Content-Security-Policy": _ASSET_CSP}
        return web.Response(body=path.read_bytes(), content_type=ctype, headers=headers)
    return error_page(404, f"Nothing is served at {request.path}.")
