"""The same origin checks in a real browser: Playwright driving the system Chromium through a running gateway.

- :func:`launch_chromium`: an async context manager yielding a Playwright ``Browser`` (the ``protoreg_browser``
  fixture uses it); :func:`chromium_path` finds the system Chromium.
- :func:`check_origin_matrix`: for every ordered pair of the given custom URLs, checks in the browser that
  cookies, localStorage, IndexedDB, service workers, DOM access through an iframe and credentialed fetch are
  shared exactly when the two URLs are same-origin, and that a cross-origin credentialed fetch is readable only
  when the response's CORS headers allow it. Failures raise one AssertionError with a table of every failing
  pair and mechanism.

Probe pages: storage, service-worker and iframe checks run in small pages that the browser context serves itself
(Playwright routes ``/__protoreg_probe__/*`` on each gateway host), so they test the browser's origin rules for
the gateway's hosts whatever the extension's pages contain. The credentialed fetch runs in the first URL's real page
(so that page's CSP ``connect-src`` applies) and goes to the second, through the extension's handler, so it tests
the handler's CORS headers too.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from yarl import URL

__all__ = ["CHROMIUM_FLAGS", "INSTALL_HINT", "MECHANISMS", "BrowserUnavailable", "MatrixRow", "check_origin_matrix",
           "chromium_path", "format_table", "launch_chromium"]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
INSTALL_HINT = ("install the system Chromium (Debian: apt-get install chromium; or `python3 tasks.py test`) and "
                "the playwright package (pip install playwright; no browser download is needed)")
MECHANISMS = ("cookies", "localStorage", "IndexedDB", "service workers", "DOM access", "credentialed fetch")
PROBE = "/__protoreg_probe__/"

_PROBE_PAGE = "<!doctype html><meta charset=utf-8><title>protoreg probe</title><p>probe</p>"
_SW = "self.addEventListener('fetch', () => {});"


class BrowserUnavailable(RuntimeError):
    """No Chromium or no playwright: the message says what to install."""


def chromium_path() -> str:
    """The system Chromium's path, or :class:`BrowserUnavailable` with the install hint."""
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        raise BrowserUnavailable(f"Chromium is not installed: {INSTALL_HINT}")
    return path


@asynccontextmanager
async def launch_chromium(**launch: Any) -> AsyncIterator[Any]:
    """Yield a headless Playwright Browser on the system Chromium (the flags of protoreg's own browser tests)."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise BrowserUnavailable(f"playwright is not installed: {INSTALL_HINT}") from None
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, **launch)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass(frozen=True)
class MatrixRow:
    page: str        # the custom URL whose page acts
    target: str      # the custom URL whose state or document it reaches for
    mechanism: str
    expected: str    # "shared" / "blocked" (or "readable" for a CORS-allowed fetch)
    observed: str

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


def format_table(rows: Sequence[MatrixRow]) -> str:
    head = ("from", "to", "mechanism", "expected", "observed")
    cells = [head, *((r.page, r.target, r.mechanism, r.expected, r.observed) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _gateway_url(gateway: Any, custom: str, path: str | None = None) -> str:
    from protoreg.gateway.hosts import to_gateway_url

    registry = gateway.registry
    url = registry.resolve(custom)
    if path is not None:
        url = url.with_path(path, encoded=True).with_query(None).with_fragment(None)
    owner = registry.lookup(url.scheme).extension.id
    return str(to_gateway_url(url, f"localhost:{gateway.port}", owner))


async def _cors_allows(gateway: Any, from_url: str, target: str) -> bool:
    """Whether the target's response lets a credentialed fetch from from_url's origin read it (per Fetch)."""
    import aiohttp

    origin = str(URL(from_url).origin())
    parsed = URL(target)
    direct = parsed.with_host("127.0.0.1")  # *.localhost resolves in browsers, not always in the system resolver
    headers = {"Origin": origin, "Host": f"{parsed.host}:{parsed.port}"}
    async with aiohttp.ClientSession() as client, client.get(direct, headers=headers,
                                                             allow_redirects=False) as resp:
        allow = resp.headers.get("Access-Control-Allow-Origin")
        creds = resp.headers.get("Access-Control-Allow-Credentials")
        return allow == origin and creds == "true"


_WRITE = """async (m) => {
    document.cookie = m + '=1; path=/';
    localStorage.setItem(m, '1');
    await new Promise((ok, bad) => { const r = indexedDB.open(m, 1); r.onsuccess = () => { r.result.close(); ok(); };
                                     r.onerror = bad; });
    let sw = 'none';
    if (navigator.serviceWorker) {
        try { await navigator.serviceWorker.register('%SW%?' + m, {scope: '%PROBE%' + m + '/'}); sw = 'ok'; }
        catch (e) { sw = String(e); }
    }
    return sw;
}""".replace("%SW%", PROBE + "sw.js").replace("%PROBE%", PROBE)

_READ = """async () => {
    const cookies = document.cookie.split(';').map(s => s.trim().split('=')[0]).filter(Boolean);
    const ls = Object.keys(localStorage);
    const dbs = (await indexedDB.databases()).map(d => d.name);
    const sws = navigator.serviceWorker
        ? (await navigator.serviceWorker.getRegistrations()).map(r => new URL(r.scope).pathname.split('/')[2])
        : [];
    return {cookies, ls, dbs, sws};
}"""

_DOM = """async (src) => {
    const f = document.createElement('iframe');
    await new Promise((ok) => { f.onload = ok; f.src = src; document.body.appendChild(f); setTimeout(ok, 5000); });
    try { return f.contentWindow.document.title === 'protoreg probe' ? 'shared' : 'blocked'; }
    catch (e) { return 'blocked'; }
}"""

_FETCH = """async (u) => {
    try { await (await fetch(u, {credentials: 'include'})).arrayBuffer(); return 'readable'; }
    catch (e) { return 'blocked'; }
}"""


async def check_origin_matrix(browser: Any, gateway: Any, urls: Sequence[str]) -> list[MatrixRow]:
    """Check every ordered pair of ``urls`` (custom URLs served by ``gateway``) in ``browser``; returns the rows.

    Raises AssertionError with a table of the failing pairs and mechanisms."""
    registry = gateway.registry
    urls = list(dict.fromkeys(urls))
    markers = {u: f"m{i}" for i, u in enumerate(urls)}
    context = await browser.new_context()
    try:
        async def serve_probe(route: Any) -> None:
            if URL(route.request.url).path == PROBE + "sw.js":
                await route.fulfill(status=200, body=_SW, headers={"Content-Type": "text/javascript"})
            else:
                await route.fulfill(status=200, body=_PROBE_PAGE, headers={"Content-Type": "text/html"})

        await context.route(f"**{PROBE}**", serve_probe)
        page = await context.new_page()
        sw_notes: dict[str, str] = {}
        for u in urls:
            await page.goto(_gateway_url(gateway, u, PROBE + "page"))
            sw_notes[u] = await page.evaluate(_WRITE, markers[u])
        seen: dict[str, dict[str, list[str]]] = {}
        for u in urls:
            await page.goto(_gateway_url(gateway, u, PROBE + "page"))
            seen[u] = await page.evaluate(_READ)
        rows: list[MatrixRow] = []
        keys = {"cookies": "cookies", "localStorage": "ls", "IndexedDB": "dbs", "service workers": "sws"}
        for a in urls:
            for b in urls:
                if a == b:
                    continue
                same = registry.origin(a).same_origin(registry.origin(b))
                expected = "shared" if same else "blocked"
                for mechanism, key in keys.items():
                    observed = "shared" if markers[b] in seen[a][key] else "blocked"
                    if mechanism == "service workers" and sw_notes[b] != "ok":
                        observed = f"not registered: {sw_notes[b]}"[:60]
                    rows.append(MatrixRow(a, b, mechanism, expected, observed))
                await page.goto(_gateway_url(gateway, a, PROBE + "page"))
                rows.append(MatrixRow(a, b, "DOM access", expected,
                                      await page.evaluate(_DOM, _gateway_url(gateway, b, PROBE + "frame"))))
                # from a's real page: Chromium puts a page fulfilled by a route in the public address space,
                # whose fetches to the loopback gateway Private Network Access refuses before CORS is consulted
                await page.goto(_gateway_url(gateway, a))
                target = _gateway_url(gateway, b)
                fetch_expected = "readable" if same or await _cors_allows(gateway, _gateway_url(gateway, a),
                                                                          target) else "blocked"
                rows.append(MatrixRow(a, b, "credentialed fetch", fetch_expected,
                                      await page.evaluate(_FETCH, target)))
    finally:
        await context.close()
    failing = [r for r in rows if not r.ok]
    if failing:
        raise AssertionError(
            f"origin separation failed for {len(failing)} of {len(rows)} checks (same origin must share cookies, "
            "storage, service workers and DOM; cross origin must not, and a cross-origin credentialed fetch is "
            "readable only with Access-Control-Allow-Origin: <origin> and Access-Control-Allow-Credentials: "
            "true):\n" + format_table(failing))
    return rows
