"""The aiohttp gateway: one browser origin per (scheme, host), through the same policy as ``Session.fetch``.

``http://<host-label>.<scheme-label>.<site-label>.localhost:PORT/path`` is served by the scheme's handler as
``scheme://host/path`` (see :mod:`protoreg.gateway.hosts` for why each origin carries a site label of its own).
The bare host (``localhost:PORT``) serves the dashboard, the path form ``/<scheme>/<host>/path`` (301 to the
subdomain form) and the registerProtocolHandler router form ``/?uri=<scheme>://...``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from protoreg import content, filters
from protoreg.browser_headers import browser_headers, request_headers
from protoreg.errors import InvalidRequest, InvalidURL, PermissionDenied, PolicyError, ProtoregError, UnknownScheme
from protoreg.gateway import dashboard
from protoreg.gateway.hosts import (
    GatewayTarget,
    LabelTooLong,
    encode_scheme_label,
    parse_host_header,
    site_label,
    to_custom_url,
    to_gateway_url,
)
from protoreg.gateway.pages import error_page
from protoreg.session import Session
from protoreg.worker.config import WorkerConfig

if TYPE_CHECKING:
    from protoreg.registry import Registry

__all__ = ["REGISTRY", "SESSION", "create_app"]

log = logging.getLogger("protoreg.gateway")

REGISTRY: Final = web.AppKey("protoreg_registry", object)
SESSION: Final = web.AppKey("protoreg_session", Session)

# A dot segment in any spelling a WHATWG parser accepts ("..", ".%2e", "%2E%2e", ...), or a backslash/NUL.
_TRAVERSAL: Final = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:/|$)|\\|%5c|%00|\x00", re.IGNORECASE)


def create_app(registry: Registry, *, session: Session | None = None, config: WorkerConfig | None = None,
               **worker_options: Any) -> web.Application:
    """An aiohttp application serving ``registry``'s schemes; it owns a Session unless one is given."""
    app = web.Application(client_max_size=1 << 20)
    app[REGISTRY] = registry
    own_session = session is None
    app[SESSION] = session or Session(registry, config, **worker_options)

    async def on_startup(app: web.Application) -> None:
        await app[SESSION].start()

    async def on_cleanup(app: web.Application) -> None:
        if own_session:
            await app[SESSION].close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", _handle, expect_handler=_expect)
    return app


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` is answered; any other expectation (or an undecodable one) gets a 417 page."""
    value = request.headers.get("Expect", "")
    if value.isascii() and value.strip().lower() == "100-continue":
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None
    return error_page(417, f"The request's Expect header ({value!r}) asks for something this gateway can't "
                           "promise; only 'Expect: 100-continue' is supported. Drop the header and send again.")


async def _handle(request: web.Request) -> web.StreamResponse:
    target = parse_host_header(request.headers.get("Host", ""))
    if target is None:
        return error_page(400, f"The Host header {request.headers.get('Host', '')!r} is not served here. Open "
                               "the dashboard at http://localhost:PORT/ or a site at "
                               "http://<host>.<scheme>.localhost:PORT/")
    if target.scheme is None:
        return await _bare_host(request, target)
    registry = request.app[REGISTRY]
    if target.scheme not in registry.schemes:  # type: ignore[attr-defined]
        return _unknown_scheme(registry, target.scheme, target)
    if target.host is None:
        return error_page(400, f"{request.host} names the scheme {target.scheme} but no host. Put the host "
                               f"before it: http://<host>.{encode_scheme_label(target.scheme)}.{target.authority}/")
    if _TRAVERSAL.search(request.raw_path.split("?", 1)[0]):
        return error_page(400, "The path contains a dot segment, backslash or NUL (a path traversal attempt). "
                               "Request the normalised path instead.", url=request.raw_path)
    owner = registry.lookup(target.scheme).extension.id  # type: ignore[attr-defined]
    if target.site != site_label(owner, target.scheme, target.host):
        return _not_this_site(registry, request, target)
    if request.raw_path.startswith(content.PREFIX):
        return _content_file(request, target)
    return await _proxy(request, target)


def _content_file(request: web.Request, target: GatewayTarget) -> web.StreamResponse:
    """A content script file on the page's own origin (protoreg/content.py): the path is reserved on every custom
    origin, and serves only files that an extension lists for pages of this origin."""
    registry = request.app[REGISTRY]
    page = URL.build(scheme=target.scheme or "", host=target.host or "", path="/")
    found = content.resolve_file(registry.extensions, page, request.raw_path, registry.schemes)  # type: ignore[attr-defined]
    if found is None or request.method not in ("GET", "HEAD"):
        return error_page(404, f"{request.path} is reserved for content scripts, and no installed extension injects "
                               "such a file into pages of this origin.")
    ext, path, ctype = found
    try:
        data, _integrity = content.load_file(ext, path)
    except (OSError, ValueError) as exc:
        return error_page(404, str(exc))
    return web.Response(body=data, headers={
        "Content-Type": ctype, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
        "Cross-Origin-Resource-Policy": "same-origin", "Origin-Agent-Cluster": "?1"})


async def _content_scripts(request: web.Request, url: URL, resp: Any) -> list[content.Injection]:
    """The content script files to inject into this HTML page: entries that match it, of extensions holding a
    host permission for it that the permission manager allows (it may prompt). Each decision is audited."""
    registry = request.app[REGISTRY]
    session = request.app[SESSION]
    schemes = registry.schemes  # type: ignore[attr-defined]
    found = content.candidates(registry.extensions.values(), url, schemes)  # type: ignore[attr-defined]
    if not found:
        return []
    origin = registry.origin(url).serialize()  # type: ignore[attr-defined]
    out: list[content.Injection] = []
    for ext, entry in found:
        pattern = content.granted_pattern(ext, url, schemes)
        files = [*entry.css, *entry.js]
        if pattern is None:
            session.audit.record(ext.id, origin, "content_script", str(url), False,
                                 f"{ext.id} matches {url} with a content script but holds no host permission for "
                                 f'it: add a pattern such as "{url.scheme}://{url.host}/*" to host_permissions')
            continue
        try:
            how = await session.permissions.check(ext, pattern, capability="content_script", target=str(url),
                                                  origin=origin)
        except PermissionDenied as exc:
            session.audit.record(ext.id, origin, "content_script", str(url), False, str(exc), permission=pattern)
            continue
        for path in files:
            try:
                _data, integrity = content.load_file(ext, path)
            except (OSError, ValueError) as exc:
                log.warning("content script not injected: %s", exc)
                continue
            out.append(content.Injection(ext.id, path, content.file_path(ext.id, path),
                                         "css" if path.endswith(".css") else "js", integrity, entry.run_at))
        session.audit.record(ext.id, origin, "content_script", f"{url} ({', '.join(files)})", True, how,
                             permission=pattern)
    return out


def _not_this_site(registry: Any, request: web.Request, target: GatewayTarget) -> web.StreamResponse:
    """The short form (no site label) is redirected to the full one; a site label that doesn't match the
    scheme's current owner belongs to an origin nothing serves any more (its extension was uninstalled or another
    took the scheme): its site data is cleared, so the old owner's cookies, storage and service workers end."""
    custom = f"{target.scheme}://{target.host}{request.raw_path}"
    if target.site is None:
        try:
            location = _gateway_url(registry, registry.resolve(custom), target.authority)
        except (InvalidURL, UnknownScheme) as exc:
            return error_page(400, str(exc), url=custom)
        cls = web.HTTPMovedPermanently if request.method in ("GET", "HEAD") else web.HTTPPermanentRedirect
        raise cls(location=str(location))
    page = error_page(404, f"This address belonged to an origin of {target.scheme}:// that no installed extension "
                           "serves any more (the extension that served it was uninstalled, or another extension "
                           "took the scheme). Its cookies, storage and service workers have been cleared. Open the "
                           "site again from the dashboard to reach the current one.", url=custom,
                      links=[(f"http://{target.authority}/", "the dashboard")])
    page.headers["Clear-Site-Data"] = '"cache", "cookies", "storage", "executionContexts"'
    return page


def _gateway_url(registry: Any, url: URL, authority: str) -> URL:
    """The gateway URL of a custom URL, with the site label of the extension that serves its scheme now."""
    return to_gateway_url(url, authority, registry.lookup(url.scheme).extension.id)


def _unknown_scheme(registry: Any, scheme: str, target: GatewayTarget) -> web.Response:
    links = [(f"http://{target.authority}/", "the dashboard")]
    known = sorted(registry.schemes)
    return error_page(404, f"No installed extension handles the scheme {scheme!r}. Registered schemes: "
                           f"{', '.join(known) or 'none'}. Install an extension whose manifest.json declares it "
                           "in protocol_handlers.", links=links)


async def _bare_host(request: web.Request, target: GatewayTarget) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    path = request.path
    uri = request.query.get("uri")
    if path == "/" and uri is not None:
        return _redirect_to_subdomain(registry, uri, target)
    if path == "/":
        return await dashboard.render(request, registry, request.app[SESSION], target)
    if path.startswith("/_protoreg/"):
        return await dashboard.asset(request, registry, request.app[SESSION])
    parts = request.raw_path.split("/", 3)  # "", scheme, host, rest
    if len(parts) >= 3 and parts[1] and parts[2]:
        scheme = unquote(parts[1])
        if scheme in registry.schemes:  # type: ignore[attr-defined]
            rest = parts[3] if len(parts) > 3 else ""
            host = unquote(parts[2])
            host = _cidv0_to_v1(host) if scheme == "ipfs" else _peer_id_to_name(host) if scheme == "ipns" else host
            if scheme in ("ipfs", "ipns") and _trustless(request):
                return await _trustless_path(request, target, scheme, host, rest)
            return _redirect_to_subdomain(registry, f"{scheme}://{host}/{rest}", target)
        return _unknown_scheme(registry, scheme, target)
    return error_page(404, f"Nothing is served at {path} on the dashboard host. Custom sites live at "
                           "http://<host>.<scheme>.localhost:PORT/ or /<scheme>/<host>/path.")


# -- trustless gateway path form (issue 15) ------------------------------------------------------------------------
_TRUSTLESS_TYPES: Final = ("application/vnd.ipld.raw", "application/vnd.ipld.car", "application/vnd.ipfs.ipns-record")


def _trustless(request: web.Request) -> bool:
    """A trustless-gateway request (raw block, CAR, IPNS record): verifiable bytes served as attachments, never
    rendered, so the path form answers it directly (no origin is involved) instead of redirecting."""
    if request.query.get("format") in ("raw", "car", "ipns-record"):
        return True
    accept = request.headers.get("Accept", "")
    return bool(accept) and any(t in accept for t in _TRUSTLESS_TYPES)


async def _trustless_path(request: web.Request, target: GatewayTarget, scheme: str, host: str,
                          rest: str) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    try:
        url = registry.resolve(f"{scheme}://{host}/")  # type: ignore[attr-defined]
    except InvalidURL as exc:
        return error_page(400, str(exc), url=request.raw_path)
    query = request.raw_path.partition("?")[2]
    url = URL.build(scheme=scheme, host=url.raw_host or host, path="/" + rest.partition("?")[0], query_string=query,
                    encoded=True)
    return await _proxy(request, target, url)


def _peer_id_to_name(host: str) -> str:
    """A legacy base58 PeerID (``12D3Koo...``, ``Qm...``: case-sensitive) → its libp2p-key CIDv1 in base36, the
    one form of an IPNS name that survives a DNS label."""
    if not host.startswith(("12D3Koo", "Qm", "1")):
        return host
    try:
        from multiformats import CID, multibase

        return str(CID("base36", 1, "libp2p-key", multibase.decode("z" + host)))
    except Exception:
        return host


def _cidv0_to_v1(host: str) -> str:
    """A CIDv0 (case-sensitive base58, ``Qm...``) can't survive a DNS label; subdomain gateways use CIDv1 base32."""
    if not (host.startswith("Qm") and len(host) == 46):
        return host
    try:
        from multiformats import CID

        return str(CID.decode(host).set(version=1, base="base32"))
    except Exception:
        return host


def _redirect_to_subdomain(registry: Any, uri: str, target: GatewayTarget) -> web.Response:
    try:
        url = registry.resolve(uri)
        if url.scheme not in registry.schemes:
            raise UnknownScheme(url.scheme, sorted(registry.schemes))
        location = _gateway_url(registry, url, target.authority)
    except LabelTooLong as exc:
        return error_page(400, exc.reason, url=uri)
    except (InvalidURL, UnknownScheme) as exc:
        return error_page(400 if isinstance(exc, InvalidURL) else 404, str(exc), url=uri)
    raise web.HTTPMovedPermanently(location=str(location))


def _custom_origin(registry: Any, origin_header: str | None, served: GatewayTarget) -> str | None:
    """Browser Origin (``http://a.ipfs.s….localhost:8080``) → the custom origin (``ipfs://a``) handlers see.

    Only an origin this gateway serves is translated: same scheme (http), same port, no trailing dot, and the
    site label of the scheme's current owner. Any other browser origin reaches the handler unchanged, so it can
    never pass for one of the custom origins."""
    if not origin_header or origin_header == "null":
        return origin_header
    try:
        url = URL(origin_header)
        target = parse_host_header(url.raw_authority) if url.scheme == "http" and url.raw_authority else None
    except ValueError:
        return "null"
    if target is None or target.scheme is None or target.host is None or target.authority != served.authority:
        return origin_header
    entry = registry.schemes.get(target.scheme)
    if entry is None or target.site != site_label(entry.extension.id, target.scheme, target.host):
        return origin_header
    return f"{target.scheme}://{target.host}"


def _to_browser(registry: Any, value: str, authority: str) -> str:
    """A custom URL or origin in a response header → its gateway form; other values unchanged."""
    try:
        url = URL(value)
    except ValueError:
        return value
    if url.scheme in registry.schemes and url.raw_host:
        try:
            out = str(_gateway_url(registry, url, authority))
        except (InvalidURL, ValueError):
            return value
        return out.rstrip("/") if value.count("/") == 2 else out  # an origin stays an origin
    return value


async def _read_upto(resp: Any, limit: int) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """Up to ``limit`` bytes of the body; (all of it, None), or (what was read, the rest of the stream)."""
    chunks: list[bytes] = []
    size = 0
    stream = resp.stream()
    async for chunk in stream:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), stream
    return b"".join(chunks), None


async def _stream_rest(request: web.Request, url: URL, resp: Any, headers: CIMultiDict[str], head: bytes,
                       rest: AsyncIterator[bytes]) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, headers=headers)
    try:
        await out.prepare(request)
        await out.write(head)
        async for chunk in rest:
            await out.write(chunk)
    except ProtoregError as exc:
        log.warning("stream for %s ended early: %s", url, exc)
        if request.transport is not None:
            request.transport.close()
        return out
    except (ConnectionResetError, OSError):
        resp.close()
        return out
    await out.write_eof()
    return out


async def _request_body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


async def _proxy(request: web.Request, target: GatewayTarget, custom: URL | None = None) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    session = request.app[SESSION]
    try:
        url = custom or registry.resolve(to_custom_url(target, request.raw_path))  # type: ignore[attr-defined]
    except InvalidURL as exc:
        return error_page(400, str(exc), url=request.raw_path)
    # e.g. "123" is the IPv4 host 0.0.0.123: one gateway origin per custom origin
    if custom is None and url.raw_host != target.host:
        raise web.HTTPMovedPermanently(location=str(_gateway_url(registry, url, target.authority)))
    headers = request_headers(request.headers.items())
    origin = _custom_origin(registry, request.headers.get("Origin"), target)
    has_body = request.body_exists and request.method not in ("GET", "HEAD")
    try:
        resp = await session.fetch(url, method=request.method, headers=headers,
                                   body=_request_body(request) if has_body else None, mode="navigate",
                                   redirect="manual", origin=origin)
    except (PolicyError, InvalidURL, UnknownScheme, InvalidRequest) as exc:
        return error_page(403 if isinstance(exc, PolicyError) else 400, str(exc), url=str(url))
    except ProtoregError as exc:
        return error_page(502, str(exc), url=str(url))
    except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException) as exc:  # the upload broke off
        return error_page(400, f"The request body could not be read to the end ({type(exc).__name__}); the "
                               "handler was stopped. Send the request again.", url=str(url))
    if resp.type == "error":
        ext = resp.error.extension if resp.error is not None else None
        return error_page(resp.status, str(resp.error or "handler failed"), extension=ext, url=str(url))
    # nosniff, Origin-Agent-Cluster, custom URLs and origins in their gateway form: protoreg/browser_headers.py
    headers = browser_headers(resp.headers.items(), rewrite=lambda v: _to_browser(registry, v, target.authority))
    if custom is not None:  # a trustless answer on the bare (dashboard) host: never a document with its origin
        headers.add("Content-Security-Policy", "sandbox; default-src 'none'")
        if not headers.get("Content-Type", "").startswith(_TRUSTLESS_TYPES):
            headers["Content-Disposition"] = "attachment"
    if custom is None and request.method == "GET" and 200 <= resp.status <= 299 and \
            "Content-Encoding" not in resp.headers:
        # Response filters (protoreg/filters.py), then content scripts (protoreg/content.py), on buffered bodies.
        found = filters.matching_filters(registry.extensions.values(), url,  # type: ignore[attr-defined]
                                         resp.headers.get("Content-Type", ""), registry.schemes)  # type: ignore[attr-defined]
        injections = (await _content_scripts(request, url, resp)
                      if resp.status == 200 and content.is_html(resp.headers) else [])
        if found or injections:
            body, rest = await _read_upto(resp, max(filters.MAX_FILTER_BODY, content.MAX_HTML))
            if rest is not None:  # too large to buffer: left alone
                for ext, _i, entry in found:
                    session.audit.record(ext.id, registry.origin(url).serialize(), "response_filter",  # type: ignore[attr-defined]
                                         f"{url} ({entry.script})", True, "skipped: the body is too large to filter")
                return await _stream_rest(request, url, resp, headers, body, rest)
            if found:
                body = await filters.apply_filters(session, registry, url, resp.status, list(resp.headers.items()),
                                                   body, found)
            if injections:  # let the page's CSP admit exactly these files
                body = content.inject_html(body, injections)
                headers = CIMultiDict(content.adjust_csp(list(headers.items()), injections, f"http://{request.host}"))
            headers.popall("Content-Length", None)
            headers.popall("ETag", None)  # the body is no longer the handler's
            return web.Response(status=resp.status, body=body, headers=headers)
    if resp.body_complete and request.method != "HEAD":  # small answers: one buffered response
        try:
            body = await resp.read()
        except ProtoregError as exc:
            return error_page(502, str(exc), url=str(url))
        return web.Response(status=resp.status, body=body, headers=headers)
    out = web.StreamResponse(status=resp.status, headers=headers)
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit():
        out.content_length = int(length)
    try:
        await out.prepare(request)
        if request.method == "HEAD":
            return out
        async for chunk in resp.stream():
            await out.write(chunk)
    except ProtoregError as exc:  # the handler failed mid-body: cut the connection rather than send wrong bytes
        log.warning("stream for %s ended early: %s", url, exc)
        if request.transport is not None:
            request.transport.close()
        return out
    except (ConnectionResetError, OSError):  # the browser went away; resp.stream() aborted the handler
        resp.close()
        return out
    await out.write_eof()
    return out
