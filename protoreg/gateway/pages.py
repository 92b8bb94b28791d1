"""HTML pages the gateway itself renders: error pages and the unknown-scheme page (always escaped)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape
from http import HTTPStatus
from typing import Final

from aiohttp import web

__all__ = ["PAGE_CSP", "STYLE", "error_page", "page_headers"]

STYLE: Final = ("body{font:15px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;"
                 "color:#1d1d1f}h1{font-size:1.4rem}code{background:#f2f2f4;padding:.1rem .3rem;border-radius:3px}"
                 ".why{background:#fff4f2;border-left:4px solid #d33;padding:.6rem 1rem}"
                 "table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}td,th{border-bottom:1px solid #ddd;"
                 "padding:.3rem .5rem;text-align:left;vertical-align:top}.ok{color:#106b21}.no{color:#a11}"
                 "img{width:20px;height:20px;vertical-align:middle}")
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

#: The gateway's own pages run no script and load nothing but their own icons; the one inline style is pinned
#: by hash.
PAGE_CSP: Final = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; base-uri 'none'; "
                   "form-action 'none'; frame-ancestors 'none'")


def page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def error_page(status: int, reason: str, *, extension: str | None = None, url: str | None = None,
               extra_html: str = "", links: Iterable[tuple[str, str]] = ()) -> web.Response:
    """A clear error page: status, which extension, why. ``extra_html`` must already be escaped."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    rows = []
    if url:
        rows.append(f"<p>URL: <code>{escape(url)}</code></p>")
    if extension:
        rows.append(f"<p>Extension: <code>{escape(extension)}</code></p>")
    link_html = "".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in links)
    body = (f"<!doctype html><meta charset=utf-8><title>{status} {escape(phrase)}</title><style>{STYLE}</style>"
            f"<h1>{status} {escape(phrase)}</h1>{''.join(rows)}<p class=why>{escape(reason)}</p>{extra_html}"
            + (f"<ul>{link_html}</ul>" if link_html else ""))
    return web.Response(status=status, text=body, content_type="text/html", headers=page_headers())
