"""HTML pages the gateway itself renders: error pages and the unknown-scheme page (always escaped).

An error page says what happened (status, the URL, the extension), why (the error's own message), what to try (by
status), and links back: to the site's front page and to the gateway dashboard. The dashboard link needs the
gateway's host and port, which only the request knows, so it is filled in when the page is sent
(:class:`ErrorPage` ``prepare``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape
from http import HTTPStatus
from typing import Final
from urllib.parse import quote

from aiohttp import web

__all__ = ["FAVICON_SVG", "FAVICON_URL", "PAGE_CSP", "STYLE", "ErrorPage", "error_page", "favicon_link",
           "page_headers"]

STYLE: Final = (
    ":root{color-scheme:light}"
    "body{font:15px/1.55 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:52rem;margin:2.5rem auto;"
    "padding:0 1.25rem;color:#1d1d1f;background:#fafafa}"
    "h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin-top:2rem}"
    "a{color:#0b57d0}code{background:#eef0f3;padding:.1rem .3rem;border-radius:3px}td code{white-space:nowrap}"
    "td a,.why,.card code{overflow-wrap:anywhere}"
    ".why{background:#fff4f2;border-left:4px solid #d33;padding:.7rem 1rem;border-radius:0 6px 6px 0;"
    "overflow-wrap:anywhere}"
    ".card{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:.9rem 1.2rem;margin:1rem 0}"
    ".card p{margin:.3rem 0}.muted{color:#5f6368;font-size:.9rem}.status{color:#a11;font-weight:600}"
    ".brand{display:flex;align-items:center;gap:.5rem;color:#5f6368;font-size:.9rem}"
    ".brand svg{width:22px;height:22px}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;background:#fff}"
    "td,th{border-bottom:1px solid #e3e5e8;padding:.35rem .55rem;text-align:left;vertical-align:top}"
    "th{font-weight:600;background:#f3f4f6}.ok{color:#106b21;font-weight:600}.no{color:#a11;font-weight:600}"
    ".note{color:#5f6368;font-size:.88rem}"
    "img{width:20px;height:20px;vertical-align:middle}ul.next{padding-left:1.2rem}ul.next li{margin:.25rem 0}")
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

#: The gateway's icon: a link in a rounded square (served at FAVICON_URL, and inlined in error pages).
FAVICON_SVG: Final = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" '
    'fill="#0b57d0"/><path d="M27 37l10-10M24 30l-4 4a7 7 0 0 0 10 10l4-4M40 34l4-4a7 7 0 0 0-10-10l-4 4" '
    'fill="none" stroke="#fff" stroke-width="5" stroke-linecap="round"/></svg>')
FAVICON_URL: Final = "/_protoreg/favicon.svg"
_FAVICON_DATA: Final = "data:image/svg+xml," + quote(FAVICON_SVG)

#: The gateway's own pages run no script and load nothing but their own icons; the one inline style is pinned
#: by hash. ``data:`` images are the inline favicon of error pages, which are also served on custom-site origins.
PAGE_CSP: Final = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' data:; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'")

_DASHBOARD: Final = "about:protoreg-dashboard"  # replaced by the dashboard's URL when the page is sent

#: What to try, by status.
_NEXT: Final = {
    400: "Check the address: the host, the scheme label and the path must be as the dashboard shows them.",
    403: "The request was refused by origin policy (CORS, same-origin, permissions). The reason above says which "
         "header or grant is missing; the extension's author can add it.",
    404: "Check the spelling of the address, or start from the site's front page.",
    405: "This address does not accept that request method; open it in the browser (GET) instead.",
    500: "The extension's handler failed. Reload to try again; if it keeps failing, the reason above is what its "
         "author needs (run protoreg fetch -i URL to see it in a terminal).",
    502: "The extension's handler (or its worker process) failed. Reload to try again; the gateway restarts "
         "crashed workers. If it keeps failing, the reason above is what the extension's author needs.",
    504: "The handler took longer than the request timeout. Reload to try again in a moment.",
}


def page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def favicon_link(href: str = FAVICON_URL) -> str:
    return f'<link rel=icon type="image/svg+xml" href="{escape(href)}">'


def _brand() -> str:
    return f'<div class=brand>{FAVICON_SVG}<span>protoreg gateway</span></div>'


class ErrorPage(web.Response):
    """An error page whose dashboard link is completed from the request's Host when it is sent."""

    async def prepare(self, request: web.BaseRequest) -> object:
        text = self.text or ""
        if _DASHBOARD in text:
            self.text = text.replace(_DASHBOARD, escape(_dashboard_url(request)))
        return await super().prepare(request)


def _dashboard_url(request: web.BaseRequest) -> str:
    host = request.host or "localhost"
    name, sep, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not sep:
        name, port = host, ""
    name = name.rstrip(".").lower()
    if name.endswith(".localhost"):
        name = "localhost"
    return f"http://{name}{':' + port if port.isdigit() else ''}/"


def _commands(text: str) -> str:
    return text.replace("protoreg fetch -i URL", "<code>protoreg fetch -i URL</code>")


def error_page(status: int, reason: str, *, extension: str | None = None, url: str | None = None,
               extra_html: str = "", links: Iterable[tuple[str, str]] = ()) -> web.Response:
    """A clear error page: status, which extension, why, what to try, links back. ``extra_html`` must already be
    escaped."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    facts = []
    if url:
        facts.append(f"<p>Address: <code>{escape(url)}</code></p>")
    if extension:
        facts.append(f"<p>Extension: <code>{escape(extension)}</code></p>")
    facts.append(f"<p class=muted>HTTP status {status} ({escape(phrase)})</p>")
    hint = _NEXT.get(status) or (_NEXT[500] if status >= 500 else _NEXT[400])
    given = [(href, text) for href, text in links]
    hrefs = {href for href, _ in given}
    default_links = [("/", "this site's front page"), (_DASHBOARD, "the gateway dashboard (installed schemes, "
                                                                   "workers, audit log)")]
    has_dashboard = any("dashboard" in text for _, text in given)
    all_links = given + [(h, t) for h, t in default_links
                         if h not in hrefs and not (h == _DASHBOARD and has_dashboard)]
    link_html = "".join(
        f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in all_links)
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{status} {escape(phrase)}</title>{favicon_link(_FAVICON_DATA)}<style>{STYLE}</style>"
            f"{_brand()}<h1><span class=status>{status}</span> {escape(phrase)}</h1>"
            f"<p class=why>{escape(reason)}</p><div class=card>{''.join(facts)}</div>{extra_html}"
            f"<h2>What to try</h2><p>{_commands(escape(hint))}</p><ul class=next>{link_html}</ul>")
    return ErrorPage(status=status, text=body, content_type="text/html", headers=page_headers())
