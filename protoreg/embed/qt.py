"""QtWebEngine (Chromium) answering protoreg's schemes natively: pages live on their own ``ipfs://<cid>`` origins.

::

    from protoreg.embed import qt as pqt

    reg = protoreg.Registry(); reg.install(...)
    pqt.register_schemes(reg)               # before the QApplication exists
    app = QApplication(sys.argv)
    with pqt.QtRuntime(reg) as runtime:     # a Session on an asyncio loop in its own thread
        pqt.install(QWebEngineProfile.defaultProfile(), runtime)
        view = QWebEngineView(); view.load(QUrl("ipfs://bafy.../")); view.show(); app.exec()

Each request the engine makes on a registered scheme runs ``Session.fetch`` on protoreg's loop, so the origin,
CORS, CSP and trust decisions are the ones ``Session.fetch`` and the gateway make, and the browser-facing headers
come from :mod:`protoreg.browser_headers`. The engine's own behaviour for custom schemes differs from http in ways
that protoreg works around here; each is listed in docs/embedding.md ("Engine pitfalls").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from protoreg.embed import EmbedError, EngineUnavailable

try:
    from PySide6.QtCore import QByteArray, QCoreApplication, QIODevice, QObject, Qt, QUrl, Signal, Slot
    from PySide6.QtWebEngineCore import (
        QWebEngineProfile,
        QWebEngineUrlRequestInfo,
        QWebEngineUrlRequestInterceptor,
        QWebEngineUrlRequestJob,
        QWebEngineUrlScheme,
        QWebEngineUrlSchemeHandler,
    )
except ImportError as exc:  # PySide6 or its WebEngine part missing
    raise EngineUnavailable("PySide6 with QtWebEngine (PySide6-Essentials, PySide6-Addons, PySide6-WebEngine)",
                            "qt", exc) from exc

from protoreg.browser_headers import browser_headers, request_headers
from protoreg.embed._qt_body import ResponseBody
from protoreg.errors import HandlerError, InvalidRequest, InvalidURL, PolicyError, ProtoregError, UnknownScheme

if TYPE_CHECKING:
    from protoreg.registry import Registry
    from protoreg.response import FetchResponse
    from protoreg.session import Session

__all__ = ["MAX_UPLOAD", "QtRuntime", "SchemeHandler", "install", "register_schemes", "scheme_flags"]

log = logging.getLogger("protoreg.embed.qt")

#: Request bodies are read whole from the engine (its body device can't be streamed reliably): at most this much.
MAX_UPLOAD: Final = 64 << 20
_RT = QWebEngineUrlRequestInfo.ResourceType
_NAVIGATIONS: Final = frozenset({_RT.ResourceTypeMainFrame, _RT.ResourceTypeSubFrame,
                                 _RT.ResourceTypeNavigationPreloadMainFrame,
                                 _RT.ResourceTypeNavigationPreloadSubFrame})
_SCRIPT_READS: Final = frozenset({_RT.ResourceTypeXhr, _RT.ResourceTypeJson, _RT.ResourceTypeUnknown})
_DEST_HEADER: Final = "X-Protoreg-Destination"
_ENGINE_REQUEST_HEADERS: Final = frozenset({_DEST_HEADER.lower(), "user-agent", "referer", "accept-encoding"})
# The engine sets Content-Type, Content-Length and Content-Range itself; the rest is passed as extra headers.
_ENGINE_HEADERS: Final = frozenset({"content-type", "content-length", "content-range"})
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)

def scheme_flags(trustworthy: bool) -> QWebEngineUrlScheme.Flag:
    """protoreg's policy as engine flags: secure only when the handler claims ``uriIsTrustworthy``; fetch() and
    CORS like http; never local access (a custom page must not read file: URLs)."""
    flags = QWebEngineUrlScheme.Flag.FetchApiAllowed | QWebEngineUrlScheme.Flag.CorsEnabled
    if trustworthy:
        flags |= QWebEngineUrlScheme.Flag.SecureScheme
    return flags


def register_schemes(registry: Registry) -> list[str]:
    """Register every installed scheme with the engine; must run before the QApplication is created.

    Host syntax (``scheme://host/path``, each host its own origin), no port. Returns the schemes registered."""
    if QCoreApplication.instance() is not None:
        raise EmbedError("protoreg.embed.qt.register_schemes must run before the QApplication is created: the "
                         "engine reads its scheme list once at start-up. Move the call above QApplication(...)")
    done = []
    for name, entry in sorted(registry.schemes.items()):  # type: ignore[attr-defined]
        if QWebEngineUrlScheme.schemeByName(QByteArray(name.encode())).name():
            continue  # already registered (a second registry in the same process)
        scheme = QWebEngineUrlScheme(QByteArray(name.encode()))
        scheme.setSyntax(QWebEngineUrlScheme.Syntax.Host)
        scheme.setDefaultPort(QWebEngineUrlScheme.SpecialPort.PortUnspecified.value)
        scheme.setFlags(scheme_flags(entry.trustworthy))
        QWebEngineUrlScheme.registerScheme(scheme)
        done.append(name)
    return done


class QtRuntime:
    """A ``Session`` on an asyncio event loop in a thread of its own, for a Qt application's scheme handlers."""

    def __init__(self, registry: Registry, session: Session | None = None, **session_options: Any) -> None:
        from protoreg.session import Session

        self.registry = registry
        self.session = session or Session(registry, **session_options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="protoreg-qt-loop", daemon=True)
        self._started = False
        #: Requests still being answered (one future each): cancelled by close().
        self.requests: set[concurrent.futures.Future[Any]] = set()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> QtRuntime:
        if not self._started:
            self._started = True
            self._thread.start()
            self.submit(self.session.start()).result()
        return self

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        """Run ``coro`` on protoreg's loop; thread-safe."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Stop the session (every worker) and the loop thread."""
        if not self._started:
            return
        self._started = False

        for future in list(self.requests):  # loads still running: cancel them (each aborts its handler stream)
            future.cancel()
        try:
            self.submit(self.session.close()).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def __enter__(self) -> QtRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _MainThread(QObject):
    """Runs callables on the Qt main thread (jobs and devices are touched only there)."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("protoreg.embed.qt: a main-thread callback failed")


class _DestinationTagger(QWebEngineUrlRequestInterceptor):
    """Tells the scheme handler what kind of request each one is (navigation, fetch/XHR, image, ...).

    The job itself doesn't say, and the engine applies no CORS check to custom schemes: without the kind,
    protoreg couldn't tell a cross-origin ``fetch()`` (CORS applies) from a link or an ``<img>``. The value carries
    a per-process secret, so a page can't forge it with a header of its own."""

    def __init__(self, schemes: Iterable[str], token: str) -> None:
        super().__init__()
        self._schemes = frozenset(schemes)
        self._token = token

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        if info.requestUrl().scheme() in self._schemes:
            info.setHttpHeader(_DEST_HEADER.encode(), f"{self._token} {info.resourceType().value}".encode())


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[QByteArray, QByteArray]:
    """Extra response headers for the engine: one entry per name (repeats joined with ", ", as HTTP allows)."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        if name.lower() in _ENGINE_HEADERS:
            continue
        merged.setdefault(name.lower(), (name, []))[1].append(value)
    # One QByteArray in a list per name: a bare QByteArray value is taken as a sequence, one header per byte.
    return {QByteArray(name.encode()): [QByteArray(", ".join(values).encode("latin-1", "replace"))]  # type: ignore[misc]
            for name, values in merged.values()}


class SchemeHandler(QWebEngineUrlSchemeHandler):
    """Answers the engine's requests on protoreg's schemes through ``runtime.session``."""

    def __init__(self, runtime: QtRuntime, token: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self._token = token
        self._main = _MainThread()
        #: Requests whose fetch or body is still running (job -> its future): empty when nothing leaks.
        self.active: dict[int, concurrent.futures.Future[Any]] = {}
        #: The most body bytes one response ever had queued for the engine (bounded by the high-water mark).
        self.peak_queued = 0

    # -- main thread ---------------------------------------------------------------------------------------
    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        url = job.requestUrl().toString(QUrl.ComponentFormattingOption.FullyEncoded)
        method = bytes(job.requestMethod().data()).decode("latin-1")
        raw = [(bytes(k.data()).decode("latin-1"), bytes(v.data()).decode("latin-1"))
               for k, v in job.requestHeaders().items()]
        dest = None
        for name, value in raw:
            if name.lower() == _DEST_HEADER.lower():
                token, _, kind = value.partition(" ")
                if secrets.compare_digest(token, self._token) and kind.isdigit():
                    dest = _RT(int(kind))
        # Headers the engine adds itself (User-Agent, client hints) are not the page's: they must not make a
        # cross-origin fetch() look like one that needs a CORS preflight.
        headers = [(n, v) for n, v in request_headers(raw).items()
                   if n.lower() not in _ENGINE_REQUEST_HEADERS and not n.lower().startswith("sec-ch-")]
        initiator = job.initiator().toString(QUrl.ComponentFormattingOption.FullyEncoded) or None
        body, too_large = self._read_upload(job, method)
        state = _JobState(job)
        if too_large:
            self._answer_error(state, 413, f"The request body is larger than {MAX_UPLOAD >> 20} MiB, the most this "
                                           "browser passes to a handler. Send a smaller body.", url, dest)
            return
        key = id(job)
        future = self.runtime.submit(self._serve(state, url, method, headers, body, initiator, dest))
        self.active[key] = future
        self.runtime.requests.add(future)
        future.add_done_callback(self.runtime.requests.discard)
        future.add_done_callback(lambda _f: self._main.call.emit(lambda: self.active.pop(key, None)))
        # The load was aborted (tab closed, navigation away): cancel the fetch, which aborts the handler's stream.
        job.destroyed.connect(lambda *_: (state.gone(), future.cancel()))

    @staticmethod
    def _read_upload(job: QWebEngineUrlRequestJob, method: str) -> tuple[bytes | None, bool]:
        if method in ("GET", "HEAD"):
            return None, False
        device = job.requestBody()
        if device is None:
            return None, False
        if not device.isOpen():
            device.open(QIODevice.OpenModeFlag.ReadOnly)
        chunks, size = [], 0
        while size <= MAX_UPLOAD:  # bounded: the engine's body device may never report its end
            data = bytes(device.read(1 << 16).data())
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks), size > MAX_UPLOAD

    # -- protoreg's loop thread -----------------------------------------------------------------------------
    async def _serve(self, state: _JobState, url: str, method: str, headers: list[tuple[str, str]],
                     body: bytes | None, initiator: str | None, dest: Any) -> None:
        session = self.runtime.session
        navigate = dest in _NAVIGATIONS
        # Script reads (fetch, XHR) are CORS requests; what the engine calls Unknown is treated as one too.
        cors_read = dest is None or dest in _SCRIPT_READS
        registry = self.runtime.registry
        origin = initiator if initiator and initiator != "null" else None
        if origin is not None:
            try:
                registry.origin(origin)
            except (InvalidURL, ValueError):
                origin = "null"
        mode = "cors" if cors_read else "navigate"
        log.debug("%s %s from %s: destination %s, mode %s", method, url, origin, dest, mode)
        try:
            resp = await session.fetch(url, method=method, headers=headers, body=body, origin=origin, mode=mode,
                                       redirect="manual")
        except PolicyError as exc:
            log.info("blocked %s %s from %s: %s", method, url, origin, exc)
            self._answer_error(state, 403, str(exc), url, dest)
            return
        except (InvalidURL, UnknownScheme, InvalidRequest) as exc:
            self._answer_error(state, 400, str(exc), url, dest)
            return
        except ProtoregError as exc:
            self._answer_error(state, 502, str(exc), url, dest)
            return
        try:
            await self._respond(state, resp, url, method, headers, navigate, dest)
        finally:
            resp.close()

    async def _respond(self, state: _JobState, resp: FetchResponse, url: str, method: str,
                       req_headers: list[tuple[str, str]], navigate: bool, dest: Any) -> None:
        if resp.type == "error":
            ext = resp.error.extension if isinstance(resp.error, HandlerError) else None
            self._answer_error(state, resp.status, str(resp.error or "the handler failed"), url, dest, extension=ext)
            return
        location = resp.headers.get("Location")
        if 300 <= resp.status < 400 and location:
            try:
                target = str(self.runtime.registry.resolve(location, base=url))
            except InvalidURL:
                target = location
            self._main.call.emit(lambda: state.redirect(target))  # the engine reports it as a 303
            return
        if resp.status >= 400 and not navigate:  # a failed subresource: an empty body that fails to read
            self._answer_error(state, resp.status, "", url, dest)
            return
        headers = browser_headers(resp.headers.items(), agent_cluster=False)
        if resp.status != 200:  # the engine answers 200 (or 206 for a Range it computes): say what it was
            headers["X-Protoreg-Status"] = str(resp.status)
        total, skip = _range_plan(resp, req_headers)
        ctype = resp.headers.get("Content-Type", "application/octet-stream")
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        ready: asyncio.Future[ResponseBody | None] = loop.create_future()

        def reply() -> None:  # on the Qt main thread: the device must live there, next to its job
            device = None
            if state.job is not None:
                device = ResponseBody(loop, lambda: self._main.call.emit(state.wake), total=total, skip=skip)
                device.on_close = lambda: loop.call_soon_threadsafe(task.cancel) if task is not None else None
                state.reply(ctype, device, _header_map(headers.items()))
            loop.call_soon_threadsafe(lambda: ready.done() or ready.set_result(device))

        self._main.call.emit(reply)
        device = await ready
        if device is None:
            return
        if method == "HEAD":
            device.finish()
            return
        try:
            async for chunk in resp.stream():
                if device.closed:
                    return
                await device.put(chunk)
        except ProtoregError as exc:  # the handler failed mid-body: fail the load, never a truncated success
            log.warning("stream for %s ended early: %s", url, exc)
            device.fail()
            return
        except asyncio.CancelledError:
            device.fail()
            raise
        finally:
            self.peak_queued = max(self.peak_queued, device.peak)
        device.finish()

    def _answer_error(self, state: _JobState, status: int, reason: str, url: str, dest: Any, *,
                      extension: str | None = None) -> None:
        """A navigation gets protoreg's error page (the gateway's); a subresource load fails."""
        if dest not in _NAVIGATIONS:
            # job.fail() leaves a fetch() pending forever (and stalled the page's timers): reply instead, with a
            # body that fails on its first read, so no byte of a refused response reaches the page.
            failed = {QByteArray(b"X-Protoreg-Status"): [QByteArray(str(status).encode())]}  # type: ignore[misc]
            self._main.call.emit(lambda: state.reply_failed(failed))
            return
        from protoreg.gateway.pages import error_page

        page = error_page(status, reason, extension=extension, url=url)
        html = page.body if isinstance(page.body, bytes) else str(page.text or "").encode()
        headers = browser_headers(page.headers.items(), agent_cluster=False)
        headers["X-Protoreg-Status"] = str(status)

        self._main.call.emit(lambda: state.reply_bytes("text/html; charset=utf-8", html, _header_map(headers.items())))


def _range_plan(resp: FetchResponse, req_headers: list[tuple[str, str]]) -> tuple[int | None, int]:
    """(size to report to the engine, leading bytes to drop) for the engine's own Range logic.

    The engine applies a request's Range to whatever body it is given and computes the 206 and Content-Range from
    the device's size; it seeks the device to the first byte, but not for a suffix range (``bytes=-N``), so it
    would send the body's first N bytes. A handler's 206 already holds just the range: report the whole size from
    its Content-Range and drop nothing. A 200 to a Range request is the whole body: drop the bytes before the
    range here (before the engine's seek could arrive, which races with the first chunks)."""
    content_range = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
    if resp.status == 206 and content_range is not None and content_range.group(3) != "*":
        return int(content_range.group(3)), 0
    length = resp.headers.get("Content-Length", "")
    total = int(length) if length.isdigit() else None
    wanted = next((_RANGE.match(v) for n, v in req_headers if n.lower() == "range"), None)
    if wanted is None or total is None or resp.status != 200:
        return total, 0
    first, last = wanted.groups()
    if first:
        return total, min(int(first), total)
    if last:
        return total, max(total - int(last), 0)
    return total, 0


class _JobState:
    """A job and whether it still exists; every call happens on the Qt main thread."""

    def __init__(self, job: QWebEngineUrlRequestJob) -> None:
        self.job: QWebEngineUrlRequestJob | None = job
        self.device: QIODevice | None = None
        self._keep: list[Any] = []

    def gone(self) -> None:
        self.job = None

    def wake(self) -> None:
        if self.device is not None and self.job is not None:
            self.device.readyRead.emit()

    def reply(self, ctype: str, device: QIODevice, headers: dict[QByteArray, QByteArray]) -> None:
        if self.job is None:
            return
        self.device = device
        device.setParent(self.job)  # deleted with the job
        if headers:
            self.job.setAdditionalResponseHeaders(headers)
        self.job.reply(QByteArray(ctype.encode("latin-1", "replace")), device)

    def reply_bytes(self, ctype: str, body: bytes, headers: dict[QByteArray, QByteArray]) -> None:
        from PySide6.QtCore import QBuffer

        if self.job is None:
            return
        buffer = QBuffer(self.job)
        buffer.setData(QByteArray(body))
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        if headers:
            self.job.setAdditionalResponseHeaders(headers)
        self.job.reply(QByteArray(ctype.encode()), buffer)

    def reply_failed(self, headers: dict[QByteArray, QByteArray]) -> None:
        if self.job is None:
            return
        device = _FailedBody(self.job)
        device.open(QIODevice.OpenModeFlag.ReadOnly)
        self.job.setAdditionalResponseHeaders(headers)
        self.job.reply(QByteArray(b"text/plain"), device)

    def redirect(self, url: str) -> None:
        if self.job is not None:
            self.job.redirect(QUrl(url))



class _FailedBody(QIODevice):
    """A body whose first read fails: the engine ends the load with an error and no data."""

    def readData(self, maxlen: int) -> None:
        return None

    def writeData(self, data: bytes) -> int:
        return -1


def install(profile: QWebEngineProfile, runtime: QtRuntime) -> SchemeHandler:
    """Answer every scheme of ``runtime.registry`` in ``profile`` (schemes must be registered already)."""
    if not runtime._started:
        runtime.start()
    token = secrets.token_hex(16)
    handler = SchemeHandler(runtime, token, parent=profile)
    schemes = sorted(runtime.registry.schemes)  # type: ignore[attr-defined]
    for name in schemes:
        if not QWebEngineUrlScheme.schemeByName(QByteArray(name.encode())).name():
            raise EmbedError(f"the scheme {name!r} was not registered with the engine; call "
                             "protoreg.embed.qt.register_schemes(registry) before creating the QApplication")
        profile.installUrlSchemeHandler(QByteArray(name.encode()), handler)
    tagger = _DestinationTagger(schemes, token)
    tagger.setParent(profile)
    profile.setUrlRequestInterceptor(tagger)
    handler._tagger = tagger  # type: ignore[attr-defined]
    return handler
