"""Drive a real QtWebEngine (offscreen) through protoreg.embed.qt and print what the pages observed, as JSON.

Run by tests/embed/test_qt.py in a subprocess (one QApplication per process, and a crash can't take pytest down):

    python -m tests.embed.qt_driver STATE_DIR OUT.json [SCENARIO ...]

Exit status 3 with ``SKIP: reason`` on stderr when the engine can't start here (no PySide6, no display plugin,
missing libraries); any other failure is a real failure of the test.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SKIP = 3


def _skip(reason: str) -> None:
    print(f"SKIP: {reason}", file=sys.stderr, flush=True)
    sys.exit(SKIP)


class Browser:
    def __init__(self, app: Any, profile: Any) -> None:
        from PySide6.QtCore import QTimer
        from PySide6.QtWebEngineCore import QWebEnginePage

        self.app = app
        self.console: dict[str, Any] = {}
        self.loads: list[bool] = []
        browser = self

        class Page(QWebEnginePage):
            def javaScriptConsoleMessage(self, level: Any, message: str, line: int, source: str) -> None:
                key, _, rest = message.partition(" ")
                if key.startswith("R#"):
                    browser.console[key] = json.loads(rest)

        self.page = Page(profile)
        self.page.loadFinished.connect(self.loads.append)
        self._tick = QTimer()
        self._tick.start(20)  # wakes the waiting loop below at least this often
        self._ids = itertools.count()

    def spin(self, done: Any, timeout: float) -> None:
        from PySide6.QtCore import QEventLoop

        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s")
            self.app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)

    def load(self, url: str, timeout: float = 20) -> bool:
        from PySide6.QtCore import QUrl

        before = len(self.loads)
        self.page.load(QUrl(url))
        self.spin(lambda: len(self.loads) > before, timeout)
        return self.loads[-1]

    def wait_load(self, before: int, timeout: float = 20) -> bool:
        self.spin(lambda: len(self.loads) > before, timeout)
        return self.loads[-1]

    def js(self, body: str, timeout: float = 30) -> Any:
        """Run ``body`` (an async function body) in the page; its return value, or {"error": ...}."""
        key = f"R#{next(self._ids)}"
        self.page.runJavaScript(
            "(async () => { let out; try { out = {ok: await (async () => {" + body + "})()}; }"
            " catch (e) { out = {error: String(e)}; }"
            f" console.log('{key} ' + JSON.stringify(out)); }})()")
        self.spin(lambda: key in self.console, timeout)
        return self.console.pop(key)

    def url(self) -> str:
        return self.page.url().toString()


def scenario_demo(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    root = ctx["demo_root"]
    out: dict[str, Any] = {"loaded": b.load(f"ipfs://{root}/")}
    out["page"] = b.js("""
        await Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => i.onload = i.onerror = r)));
        return {origin: location.origin, secure: isSecureContext, h1: document.querySelector('h1').innerText,
                images: [...document.images].map(i => i.naturalWidth),
                maxWidth: getComputedStyle(document.body).maxWidth,
                links: [...document.links].map(a => a.getAttribute('href'))};""")
    before = len(b.loads)
    b.js("[...document.links].find(a => a.textContent.includes('Docs')).click(); return true;")
    out["docs_loaded"] = b.wait_load(before)
    out["docs_url"] = b.url()
    out["docs"] = b.js("return {h1: document.querySelector('h1').innerText, origin: location.origin};")
    return out


def scenario_origins(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    read = """return {origin: location.origin, secure: isSecureContext, stored: localStorage.getItem('k'),
                      cookie: document.cookie,
                      idb: await new Promise(r => { const q = indexedDB.open('db'); q.onupgradeneeded = () =>
                           q.result.createObjectStore('s'); q.onsuccess = () => { const s = q.result.objectStoreNames
                           .length; q.result.close(); r(s); }; q.onerror = () => r('error: ' + q.error); })};"""
    out: dict[str, Any] = {"a_loaded": b.load("web+qtest://a/")}
    out["a_before"] = b.js(read)
    out["a_write"] = b.js("localStorage.setItem('k', 'written by a'); document.cookie = 'c=from-a; path=/';"
                          " return localStorage.getItem('k');")
    b.load("web+qtest://b/")
    out["b"] = b.js(read)
    b.load("web+qtest://a/")
    out["a_again"] = b.js(read)
    out["iframe"] = b.js("""
        const f = document.createElement('iframe'); f.src = 'web+qtest://b/';
        await new Promise(r => { f.onload = r; document.body.appendChild(f); });
        try { return 'read: ' + f.contentWindow.document.title; } catch (e) { return 'blocked: ' + e.name; }""")
    return out


def scenario_cors(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    b.load("web+qtest://a/")
    probe = "try { const r = await fetch(%r); return {status: r.status, blocked: r.headers.get('x-protoreg-status')," \
            " text: await r.text()}; }" \
            " catch (e) { return {failed: String(e)}; }"
    return {name: b.js(probe % url) for name, url in [
        ("cross_without_cors", "web+qtest://b/none"), ("cross_with_cors", "web+qtest://b/cors"),
        ("same_origin", "web+qtest://a/none")]} | {
        "cross_image": b.js("""const i = new Image(); i.src = 'web+qtest://b/pixel.svg';
            return await new Promise(r => { i.onload = () => r('loaded ' + i.naturalWidth);
                                            i.onerror = () => r('error'); });""")}


def scenario_stream(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    b.load("web+qtest://a/")
    out = {"big": b.js("""
        const t0 = performance.now(); const r = await fetch('/big'); const reader = r.body.getReader();
        let n = 0, sum = 0;
        for (;;) { const {done, value} = await reader.read(); if (done) break;
                   for (let i = (4096 - n % 4096) % 4096; i < value.length; i += 4096)
                       sum = (sum + value[i] * (n + i)) % 1000000007;
                   n += value.length; }
        return {status: r.status, length: n, sum: sum, ms: performance.now() - t0,
                contentLength: r.headers.get('content-length')};""", timeout=60)}
    out["peak_queued"] = ctx["handler"].peak_queued
    rng = """const r = await fetch(%r, {headers: {Range: %r}});
             return {status: r.status, range: r.headers.get('content-range'),
                     body: [...new Uint8Array(await r.arrayBuffer())]};"""
    for path in ("/media", "/whole"):
        for spec in ("bytes=10-19", "bytes=-5", "bytes=1000-"):
            out[f"{path} {spec}"] = b.js(rng % (path, spec))
    out["media_element"] = b.js("""const v = document.createElement('video'); v.src = '/media';
        return await new Promise(r => { v.onerror = () => r('error ' + (v.error && v.error.code));
                                        v.onloadedmetadata = () => r('metadata');
                                        setTimeout(() => r('pending'), 3000); });""")
    return out


def scenario_errors(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"boom_loaded": b.load("web+qtest://a/boom")}
    out["boom"] = b.js("return {title: document.title, text: document.body.innerText, origin: location.origin};")
    out["missing_loaded"] = b.load("web+qtest://a/missing-page")
    out["missing"] = b.js("return document.body.innerText;")
    b.load("web+qtest://a/")
    out["fetch_boom"] = b.js("try { const r = await fetch('/boom'); return {status: r.status, text: await r.text(),"
                             " blocked: r.headers.get('x-protoreg-status')}; }"
                             " catch (e) { return {failed: String(e)}; }")
    out["fetch_missing"] = b.js("try { const r = await fetch('/missing-page'); return {status: r.status,"
                                " blocked: r.headers.get('x-protoreg-status')}; }"
                                " catch (e) { return {failed: String(e)}; }")
    t0 = time.monotonic()
    out["hang_loaded"] = b.load("web+qtest://a/hang", timeout=30)
    out["hang_seconds"] = time.monotonic() - t0
    out["hang"] = b.js("return document.body.innerText;")
    out["redirect_loaded"] = b.load("web+qtest://a/redir")
    out["redirect_url"] = b.url()
    out["fetch_redirect"] = b.js("const r = await fetch('/redir'); return {status: r.status, url: r.url,"
                                 " redirected: r.redirected, text: await r.text()};")
    return out


def scenario_requests(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    b.load("web+qtest://a/")
    out = {"headers": b.js("const r = await fetch('/headers'); return [...r.headers.entries()];")}
    out["upload"] = b.js("const r = await fetch('/echo', {method: 'POST', body: 'hello upload'});"
                         " return await r.text();")
    out["upload_too_large"] = b.js("""try {
        const r = await fetch('/echo', {method: 'POST', body: new Uint8Array((64 << 20) + 1)});
        return {status: r.status, blocked: r.headers.get('x-protoreg-status'),
                length: (await r.arrayBuffer()).byteLength}; } catch (e) { return {failed: String(e)}; }""")
    return out


def scenario_abort(b: Browser, ctx: dict[str, Any]) -> dict[str, Any]:
    b.load("web+qtest://a/")
    out = {"first": b.js("""const ac = new AbortController(); const r = await fetch('/slow', {signal: ac.signal});
        const reader = r.body.getReader(); const {value} = await reader.read(); ac.abort();
        return new TextDecoder().decode(value);""")}
    handler = ctx["handler"]
    t0 = time.monotonic()
    try:
        b.spin(lambda: not handler.active, 10)
    except TimeoutError:
        pass
    out["active_after"] = len(handler.active)
    out["seconds_to_release"] = time.monotonic() - t0
    return out


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv: list[str]) -> int:
    import logging
    import os

    if os.environ.get("PROTOREG_QT_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    state_dir, out_path, names = Path(argv[0]), Path(argv[1]), argv[2:] or list(SCENARIOS)
    try:
        from protoreg.embed import qt as pqt
    except ImportError as exc:
        _skip(str(exc))
    from PySide6.QtWebEngineCore import QWebEngineProfile
    from PySide6.QtWidgets import QApplication

    import protoreg
    from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE, ipfs_core, store_for

    reg = protoreg.Registry()
    ipfs = reg.install(IPFS_BUNDLE)
    reg.install(HERE / "qt_ext")
    with DEMO_CAR.open("rb") as f:
        root = ipfs_core().cids.v1_base32(ipfs_core().car.import_car(f, store_for(ipfs, state_dir)).roots[0])
    pqt.register_schemes(reg)
    app = QApplication(["protoreg-qt-test"])
    results: dict[str, Any] = {"timings": {}}
    try:  # too late now: the engine reads its scheme list once
        pqt.register_schemes(reg)
        results["late_register"] = "no error"
    except protoreg.ProtoregError as exc:
        results["late_register"] = f"{type(exc).__name__}: {exc}"
    config = protoreg.WorkerConfig(state_dir=str(state_dir), request_timeout=2.0)
    with pqt.QtRuntime(reg, config=config) as runtime:
        profile = QWebEngineProfile("protoreg-qt-test")
        profile.setPersistentStoragePath(str(state_dir / "qt-profile"))
        profile.setCachePath(str(state_dir / "qt-cache"))
        handler = pqt.install(profile, runtime)
        browser = Browser(app, profile)
        try:
            if not browser.load("about:blank", timeout=30):
                _skip("QtWebEngine started but could not load about:blank")
        except TimeoutError:
            _skip("QtWebEngine did not load about:blank within 30 s (the engine can't start here)")
        ctx = {"demo_root": root, "handler": handler, "registry": reg}
        for name in names:
            t0 = time.monotonic()
            try:
                results[name] = SCENARIOS[name](browser, ctx)
            except Exception:
                results[name] = {"driver_error": traceback.format_exc()}
            results["timings"][name] = round(time.monotonic() - t0, 2)
        results["demo_root"] = root
        out_path.write_text(json.dumps(results, indent=1))
        browser.page.deleteLater()
        app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
