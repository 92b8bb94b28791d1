"""``Session``: fetch custom-scheme URLs from Python with browser-grade semantics.

One ``fetch`` is: resolve the URL (WHATWG, port stripped) -> look up the scheme -> decide origin policy in the
parent (mode, CORS preflight) -> dispatch to the extension's worker -> apply policy to the response (CORS check and
filtering, CSP merged with the baseline, trust) -> follow redirects like Fetch (at most 20).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from multidict import CIMultiDict
from yarl import URL

from protoreg.audit import AuditLog
from protoreg.broker import Broker
from protoreg.cache import Collector, ResponseCache, freshness_lifetime
from protoreg.errors import (
    ExtensionRevoked,
    HandlerError,
    HandlerTimeout,
    InvalidRequest,
    InvalidURL,
    PermissionDenied,
    PolicyError,
)
from protoreg.messages import check_header
from protoreg.permissions import PROMPT_TIMEOUT, PermissionManager, PromptCallback
from protoreg.policy import cors, csp
from protoreg.policy.origins import Origin
from protoreg.response import FetchResponse, ResponseType
from protoreg.storage import StorageStore
from protoreg.worker.config import WorkerConfig
from protoreg.worker.manager import WorkerManager
from protoreg.worker.process import WorkerProcess, WorkerStream

if TYPE_CHECKING:
    from protoreg.profile import Profile
    from protoreg.registry import Registry, SchemeEntry

__all__ = ["Mode", "Session", "TooManyRedirects"]

Mode = Literal["cors", "no-cors", "same-origin", "navigate"]
_MODES = ("cors", "no-cors", "same-origin", "navigate")
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 20


class TooManyRedirects(HandlerError):
    """More than 20 redirects (Fetch's limit)."""

    status = 502


def _csp_policy_of(entry: SchemeEntry) -> str | None:
    """The extension's protocol_pages policy (the manifest's content_security_policy)."""
    policy = entry.extension.manifest.content_security_policy
    return getattr(policy, "protocol_pages", None) if policy is not None else None


@functools.lru_cache(maxsize=256)
def _base_csp_items(extension_policy: str | None) -> tuple[tuple[str, str], ...]:
    """Header items of the baseline plus the extension's policy: the same for every response of an extension."""
    return tuple(csp.csp_header_items(csp.response_policies(extension_policy, [])))


def _csp_items(extension_policy: str | None, handler_headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    items = list(_base_csp_items(extension_policy))
    if any(n.lower().startswith("content-security-policy") for n, _ in handler_headers):
        items += csp.csp_header_items(csp.parse_response_policies(handler_headers))
    return items


class Session:
    """Fetch custom-scheme URLs through sandboxed handler workers::

        async with protoreg.Session(reg) as session:
            resp = await session.fetch("ipfs://bafy.../", origin="web+a://x", mode="cors")
    """

    def __init__(self, registry: Registry, config: WorkerConfig | None = None, *, profile: Profile | None = None,
                 on_prompt: PromptCallback | None = None, prompt_timeout: float = PROMPT_TIMEOUT,
                 **options: Any) -> None:
        self.registry = registry
        self.config = config or WorkerConfig(**options)
        if profile is not None:  # a profile is a state dir: storage and data dirs live in it
            self.config = dataclasses.replace(self.config, state_dir=str(profile.path))
        self._tempdir: str | None = None
        if self.config.state_dir is not None:
            state = Path(self.config.state_dir)
            storage = StorageStore(state / "storage.sqlite3")
        else:
            self._tempdir = tempfile.mkdtemp(prefix="protoreg-state-")
            state, storage = Path(self._tempdir), StorageStore()
        # -- permission decisions and the audit log (protoreg.permissions, protoreg.audit): in the profile -------
        persistent = self.config.state_dir is not None
        #: The user's decisions per (extension, permission), consulted on every capability call; prompts.
        self.permissions = PermissionManager(state if persistent else None, on_prompt=on_prompt,
                                             prompt_timeout=prompt_timeout, session=True)
        audit = AuditLog(path=state / "audit.sqlite3") if persistent else AuditLog()
        # ------------------------------------------------------------------------------------------------------
        self.broker = Broker(audit=audit, permissions=self.permissions, storage=storage, data_root=state / "data",
                             allow_private_networks=self.config.allow_private_networks,
                             allow_networks=tuple(self.config.allow_networks),
                             max_concurrent_fetches=self.config.max_concurrent_fetches,
                             storage_quota=self.config.storage_quota)
        self.workers = WorkerManager(registry, self.config, on_call=self._on_call, data_dir=self.broker.data_dir)
        #: Immutable handler answers the parent repeats itself (protoreg/cache.py); None when turned off.
        self.cache = ResponseCache(self.config.response_cache_bytes) if self.config.response_cache_bytes > 0 \
            else None
        self._unsubscribe = registry.subscribe(self._on_registry_event)
        self._watchdogs: set[asyncio.Task[bool]] = set()
        self._started = False

    @property
    def audit(self) -> AuditLog:
        """Every capability call of this session's workers, allowed or denied."""
        return self.broker.audit

    def _on_registry_event(self, event: str, extension: Any) -> None:
        if self.cache is not None:  # new code, or no code: its answers are no longer the ones it would give
            self.cache.forget(extension.id)
        if event == "uninstalled":
            from protoreg.sandboxes import with_sandboxes

            for grantee in with_sandboxes([extension]):  # and each named sandbox's storage, data dir and decisions
                self.broker.forget(grantee)
                self.permissions.forget(grantee.id)

    async def _on_call(self, worker: WorkerProcess, stream: WorkerStream | None, msg: dict[str, Any]) -> Any:
        # Identity comes from the channel: which worker (so which extension, and which of its named sandboxes, if
        # any) and which request stream; never from the message.
        ext = self.registry.extensions.get(worker.extension_id or worker.label)
        if ext is None or stream is None:
            raise PermissionDenied(f"{msg.get('cap')}: the extension {worker.label} is no longer installed")
        url = URL(stream.url, encoded=True)
        if worker.sandbox is not None:  # a named sandbox: its own grants, the origin its caller was serving
            if stream.origin is None:
                raise PermissionDenied(f"{msg.get('cap')}: sandbox {worker.label} called outside a message")
            origin, scheme = stream.origin, f"sandbox {worker.sandbox}"
        elif stream.origin is not None:  # a response filter's stream: the origin of the response it filters
            origin, scheme = stream.origin, url.scheme
        else:
            origin, scheme = self.registry.origin(url).serialize(), url.scheme
        if worker.bound_origin is not None and origin != worker.bound_origin:  # can't happen: defence in depth
            raise PermissionDenied(f"{msg.get('cap')}: the worker of {worker.bound_origin} named a request of {origin}")
        if msg["cap"] == "sandbox.call":
            from protoreg.sandboxes import deliver, sandbox_id

            args = msg["args"]
            target = f"{sandbox_id(ext.id, str(args.get('sandbox')))}:{str(args.get('message'))[:64]}"
            try:
                value = await deliver(self.workers, worker, ext, origin, args,
                                      max_timeout=self.config.request_timeout)
            except Exception as exc:  # refused (undeclared, or from a sandbox) vs. allowed but failed (its reason)
                refused = isinstance(exc, PermissionDenied) or getattr(exc, "kind", "") == "undeclared"
                self.broker.audit.record(ext.id, origin, "sandbox.call", target, not refused,
                                         ("" if refused else "failed: ") + str(exc)[:500])
                raise
            self.broker.audit.record(ext.id, origin, "sandbox.call", target, True, "")
            return value
        if worker.sandbox is not None:
            from protoreg.sandboxes import sandbox_extension

            ext = sandbox_extension(ext, worker.sandbox)
        return await self.broker.call(ext, origin, scheme, str(msg["cap"]), msg["args"])

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.workers.start()

    async def close(self) -> None:
        """Stop every worker; no child process, task or descriptor is left behind."""
        for task in list(self._watchdogs):  # a watchdog outliving the session would report a false "was killed"
            task.cancel()
        await asyncio.gather(*self._watchdogs, return_exceptions=True)
        await self.workers.close()
        self._unsubscribe()
        self.permissions.close()  # "session" decisions end here
        self.broker.audit.close()
        self.broker.storage.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    # -- fetch ------------------------------------------------------------------------------------------------
    async def fetch(
        self,
        url: str | URL,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | str | AsyncIterable[bytes] | None = None,
        origin: str | Origin | None = None,
        mode: Mode = "cors",
        redirect: Literal["follow", "manual"] = "follow",
        credentials: bool = False,
        timeout: float | None = None,
    ) -> FetchResponse:
        """Fetch ``url`` as the initiator ``origin`` (None: no initiator, e.g. the user typed it).

        Raises InvalidURL, UnknownScheme, or PolicyError (blocked by mode/CORS, like fetch()'s network error).
        Handler faults are responses: status 500 (raised), 502 (bad response, crash) or 504 (timeout), with
        ``type == "error"`` and the cause in ``resp.error``.
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        await self.start()
        reg = self.registry
        initiator = self._initiator(origin)
        current = reg.resolve(str(url))
        method = method.upper()
        hdrs: CIMultiDict[str] = CIMultiDict(list(headers.items()) if isinstance(headers, Mapping)
                                             else list(headers or ()))
        if not isinstance(method, str) or not method.isascii() or check_header(method, "") is not None:
            raise InvalidRequest(f"can't send the request to {url}: the method {method!r} is not an HTTP token")
        for name, value in hdrs.items():
            problem = check_header(name, value)
            if problem is not None:
                raise InvalidRequest(f"can't send {method} {url}: {problem}. Fix or drop that header")
        payload: bytes | AsyncIterable[bytes] | None = body.encode() if isinstance(body, str) else body
        timeout = self.config.request_timeout if timeout is None else timeout
        tainting: ResponseType = "basic"
        redirected = False
        for _ in range(MAX_REDIRECTS + 1):
            entry = reg.lookup(current.scheme)
            if (reason := getattr(reg, "disabled", {}).get(entry.extension.id)) is not None:
                raise ExtensionRevoked(entry.extension.id, reason)
            cross = initiator is not None and not initiator.same_origin(reg.origin(current))
            if cross:
                tainting = self._admit_cross_origin(mode, method, hdrs, initiator, current, tainting)  # type: ignore[arg-type]
                if tainting == "cors" and (cors.needs_preflight(method, hdrs.items())):
                    await self._preflight(entry, current, method, hdrs, initiator, credentials, timeout)  # type: ignore[arg-type]
            resp = await self._send(entry, current, method, hdrs, payload, initiator, cross, timeout)
            if isinstance(resp, FetchResponse):  # handler fault, as an error response
                resp.redirected = redirected
                return resp
            status, rheaders, stream, keep = resp
            location = next((v for n, v in rheaders if n.lower() == "location"), None) if status in _REDIRECTS \
                else None
            if status in _REDIRECTS and location is not None and redirect == "follow":
                if tainting == "cors":
                    self._cors_check(stream, rheaders, initiator, credentials, current)  # type: ignore[arg-type]
                try:
                    nxt = reg.resolve(location, base=str(current))
                except InvalidURL:
                    stream.abort()
                    raise
                if nxt.scheme in reg.schemes:
                    stream.abort()
                    if isinstance(payload, AsyncIterable) and status in (307, 308):
                        raise PolicyError(f"{current} redirected a streamed request body with {status}; a stream "
                                          "can't be replayed. Send the body as bytes to allow 307/308 redirects")
                    if (status == 303 and method not in ("GET", "HEAD")) or (status in (301, 302)
                                                                             and method == "POST"):
                        method, payload = "GET", None
                        for name in ("Content-Type", "Content-Length", "Content-Encoding", "Content-Language",
                                     "Content-Location"):
                            hdrs.popall(name, None)
                    if not reg.origin(nxt).same_origin(reg.origin(current)):
                        hdrs.popall("Authorization", None)  # Fetch: credentials never follow a cross-origin hop
                    current, redirected = nxt, True
                    continue
                # A redirect to a scheme no extension handles (e.g. a uriTemplate's https URL) is returned as is.
            return self._finish(entry, current, status, rheaders, stream, method, tainting, initiator,
                                credentials, timeout, redirected, keep)
        raise TooManyRedirects(f"fetching {url} was redirected more than {MAX_REDIRECTS} times (last: {current})")

    def _initiator(self, origin: str | Origin | None) -> Origin | None:
        if origin is None or isinstance(origin, Origin):
            return origin
        if origin == "null":
            return Origin.opaque()
        return self.registry.origin(origin)

    @staticmethod
    def _admit_cross_origin(mode: str, method: str, hdrs: CIMultiDict[str], initiator: Origin, url: URL,
                            tainting: ResponseType) -> ResponseType:
        who = initiator.serialize()
        if mode == "same-origin":
            raise PolicyError(f"fetch from {who} to {url} was blocked: mode 'same-origin' forbids cross-origin "
                              "requests. Use mode='cors' and have the handler send Access-Control-Allow-Origin")
        if mode == "no-cors":
            if not cors.is_cors_safelisted_method(method):
                raise PolicyError(f"fetch from {who} to {url} was blocked: mode 'no-cors' only allows GET, HEAD "
                                  f"and POST, not {method}. Use mode='cors' for other methods")
            return "opaque"
        if mode == "cors" and tainting != "opaque":
            return "cors"
        return tainting

    async def _preflight(self, entry: SchemeEntry, url: URL, method: str, hdrs: CIMultiDict[str],
                         initiator: Origin, credentials: bool, timeout: float) -> None:
        pre = cors.preflight_request_headers(initiator.serialize(), method, hdrs.items())
        resp = await self._send(entry, url, "OPTIONS", CIMultiDict(pre), None, initiator, True, timeout,
                                preflight=True)
        if isinstance(resp, FetchResponse):
            raise PolicyError(f"CORS preflight for {method} {url} failed: the handler answered {resp.status} "
                              f"({resp.error}). The actual request was not sent")
        status, rheaders, stream, _keep = resp
        stream.abort()
        cors.check_preflight(status, CIMultiDict(rheaders), origin=initiator.serialize(), method=method,
                             request_headers=hdrs.items(), credentials=credentials, url=str(url))

    async def _send(self, entry: SchemeEntry, url: URL, method: str, hdrs: CIMultiDict[str],
                    payload: bytes | AsyncIterable[bytes] | None, initiator: Origin | None, cross: bool,
                    timeout: float, *, preflight: bool = False) -> Any:
        """Run one request in the worker (or answer it from the cache); returns (status, headers, stream, keep)
        or an error FetchResponse. ``keep`` stores the whole body in the cache once it has been read, or is None."""
        if not entry.handler.uriHandlerScript:
            target = entry.template_url(url)
            return 302, [("Location", target or "")], _NoStream(), None
        items = list(hdrs.items())
        if initiator is not None and (cross or method not in ("GET", "HEAD")) and not preflight:
            send_headers = CIMultiDict(items)
            send_headers["Origin"] = initiator.serialize()
            items = list(send_headers.items())
        origin_text = initiator.serialize() if initiator is not None else None
        ext = entry.extension
        cache, href = self.cache, str(url)
        store = False
        if cache is not None and not preflight and payload is None:  # a body may change the answer: never cached
            lookup, store = cache.usable(method, items)
            if lookup and (hit := cache.get(ext.id, href, origin_text or "", items)) is not None:
                return hit.status, hit.response_headers(), _Cached(hit.body), None
        head = {"method": method, "url": href, "headers": items, "origin": origin_text}
        try:
            stream = await self.workers.dispatch(ext, head, payload, self.registry.origin(url).serialize())
        except HandlerError as err:
            return self._error_response(url, err)
        head = stream.head
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, lambda: head.done() or head.set_exception(TimeoutError()))
        try:
            status, rheaders = await head
        except TimeoutError:
            stream.abort()
            self._watch(stream.worker)
            err = HandlerTimeout(f"handler {entry.handler.uriHandlerScript} of {ext.id} did not answer "
                                 f"{method} {url} within {timeout:g}s", extension=ext.id)
            return self._error_response(url, err)
        except HandlerError as err:
            return self._error_response(url, err)
        except asyncio.CancelledError:
            stream.abort()  # the caller gave up: cancel the handler's task
            raise
        finally:
            timer.cancel()
        keep = None
        if store and status == 200 and freshness_lifetime(rheaders) is not None:
            keep = cache.collector(  # type: ignore[union-attr]
                lambda body: cache.put(ext.id, href, origin_text or "", items, status, rheaders, body))  # type: ignore[union-attr]
        return status, rheaders, stream, keep

    def _watch(self, worker: WorkerProcess) -> None:
        """After a timeout, make sure the worker's event loop still answers; a blocked one is replaced."""
        task = asyncio.ensure_future(worker.ensure_responsive(self.config.liveness_timeout))
        self._watchdogs.add(task)
        task.add_done_callback(self._watchdogs.discard)

    def _error_response(self, url: URL, err: HandlerError) -> FetchResponse:
        return FetchResponse(url=url, status=err.status, headers=[("Content-Type", "text/plain; charset=utf-8")],
                             type="error", origin=self.registry.origin(url),
                             secure_context=self.registry.is_potentially_trustworthy(url),
                             body=str(err).encode(), error=err)

    def _cors_check(self, stream: Any, rheaders: list[tuple[str, str]], initiator: Origin, credentials: bool,
                    url: URL) -> None:
        try:
            cors.cors_check(CIMultiDict(rheaders), origin=initiator.serialize(), credentials=credentials,
                            url=str(url))
        except PolicyError:
            stream.abort()
            raise

    def _finish(self, entry: SchemeEntry, url: URL, status: int, rheaders: list[tuple[str, str]], stream: Any,
                method: str, tainting: ResponseType, initiator: Origin | None, credentials: bool, timeout: float,
                redirected: bool, keep: Collector | None = None) -> FetchResponse:
        reg = self.registry
        origin = reg.origin(url)  # a registered scheme: trust follows from the origin alone
        common = {"url": url, "origin": origin, "secure_context": reg.is_potentially_trustworthy(origin),
                  "redirected": redirected}
        if tainting == "opaque":
            stream.abort()
            return FetchResponse(status=cors.OPAQUE_STATUS, headers=[], type="opaque", **common)
        if tainting == "cors":
            self._cors_check(stream, rheaders, initiator, credentials, url)  # type: ignore[arg-type]
        out = [(n, v) for n, v in rheaders if n.lower() not in (
            "content-security-policy", "content-security-policy-report-only")]
        if tainting == "cors":
            out = cors.cors_filtered_headers(out)
        out += _csp_items(_csp_policy_of(entry), rheaders)
        if method == "HEAD" or isinstance(stream, _NoStream):
            stream.abort()
            return FetchResponse(status=status, headers=out, type=tainting,
                                 body=stream.data if method != "HEAD" else b"", **common)
        return FetchResponse(status=status, headers=out, type=tainting, stream=stream, timeout=timeout,
                             collector=keep, **common)


class _NoStream:
    """Stands in for a worker stream when no worker was involved (uriTemplate redirects)."""

    body = None
    data = b""

    def abort(self) -> None:
        pass


class _Cached(_NoStream):
    """A body answered from the response cache."""

    def __init__(self, data: bytes) -> None:
        self.data = data
