"""Python response filters (parent side): an extension with the "responseFilter" permission transforms the bodies
of matching responses, whichever extension served them, in its own worker.

A manifest's ``response_filters`` entry names a script defining ``filterResponse(response, chunks)``: an async
generator (or a coroutine returning bytes) that reads the body's chunks and yields the new body; ``response`` has
``url``, ``status`` and ``headers``. The gateway runs every filter whose ``matches`` cover the URL (and whose
``types`` cover the content type), in install order then manifest order, each on the previous one's output.

A filter runs when its extension holds "responseFilter" and a host permission covering the URL (effective grants),
and the permission manager allows both (it may prompt). It runs as a request on a scheme nothing can claim
(``protoreg-filter-<n>://filter/?url=…``) in its extension's worker, with a time budget (``FILTER_BUDGET``) and an
output limit. A filter that fails in any way (raises, crashes its worker, times out, writes too much) is skipped:
the response goes on as it was before that filter, and the audit log says why. It never hangs the response.

This version buffers: bodies up to ``MAX_FILTER_BODY`` are filtered; larger ones are passed through unfiltered
(audited as skipped). Streaming filters are future work (see docs/handlers.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from yarl import URL

from protoreg.content import granted_pattern, pattern_matches
from protoreg.errors import PermissionDenied

if TYPE_CHECKING:
    from protoreg.manifest import ResponseFilter
    from protoreg.registry import Extension

__all__ = ["FILTER_BUDGET", "FILTER_SCHEME_PREFIX", "MAX_FILTER_BODY", "apply_filters", "matching_filters"]

FILTER_SCHEME_PREFIX = "protoreg-filter-"
#: Largest body filtered (and largest filter output); larger bodies pass unfiltered.
MAX_FILTER_BODY = 8 * 1024 * 1024
#: Seconds one filter may take for one response.
FILTER_BUDGET = 5.0


def matching_filters(extensions: Iterable[Extension], url: URL, content_type: str, registered: Iterable[str]
                     ) -> list[tuple[Extension, int, ResponseFilter]]:
    registered = set(registered)
    ctype = content_type.split(";", 1)[0].strip().lower()
    out = []
    for ext in extensions:
        for i, entry in enumerate(getattr(ext.manifest, "response_filters", None) or ()):
            if entry.types and ctype not in [t.lower() for t in entry.types]:
                continue
            if any(pattern_matches(p, url, registered) for p in entry.matches) and not any(
                    pattern_matches(p, url, registered) for p in entry.exclude_matches):
                out.append((ext, i, entry))
    return out


async def _allowed(session: Any, ext: Extension, url: URL, origin: str, registered: Iterable[str]) -> str:
    """How the filter was allowed; raises PermissionDenied with why not."""
    from protoreg.broker import Grants

    if "responseFilter" not in Grants.from_extension(ext).permissions:
        raise PermissionDenied(f'{ext.id} has a response filter matching {url} but lacks the "responseFilter" '
                               'permission: add "responseFilter" to "permissions" in manifest.json')
    pattern = granted_pattern(ext, url, registered)
    if pattern is None:
        raise PermissionDenied(f"{ext.id} has a response filter matching {url} but holds no host permission for "
                               f'it: add a pattern such as "{url.scheme}://{url.host}/*" to host_permissions')
    how = await session.permissions.check(ext, "responseFilter", capability="response_filter", target=str(url),
                                          origin=origin)
    how2 = await session.permissions.check(ext, pattern, capability="response_filter", target=str(url),
                                           origin=origin)
    return "; ".join(dict.fromkeys(h for h in (how, how2) if h))


async def _run(session: Any, ext: Extension, index: int, url: URL, origin: str, status: int,
               headers: list[tuple[str, str]], body: bytes) -> bytes:
    query = urlencode({"url": str(url), "status": str(status)})
    head = {"method": "POST", "url": f"{FILTER_SCHEME_PREFIX}{index}://filter/?{query}", "headers": headers,
            "origin": None}
    stream = await session.workers.dispatch(ext, head, body if body else None, origin)
    stream.origin = origin  # set by the parent: the filter's capability calls act for the filtered origin
    try:
        await stream.head
        chunks: list[bytes] = []
        size = 0
        assert stream.body is not None
        async for chunk in stream.body:
            size += len(chunk)
            if size > MAX_FILTER_BODY:
                raise ValueError(f"the filter's output is over {MAX_FILTER_BODY} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except BaseException:
        stream.abort()
        if hasattr(session, "_watch"):
            session._watch(stream.worker)  # a filter stuck in a busy loop gets its worker replaced
        raise


async def apply_filters(session: Any, registry: Any, url: URL, status: int, headers: list[tuple[str, str]],
                        body: bytes, filters: list[tuple[Extension, int, ResponseFilter]],
                        budget: float | None = None) -> bytes:
    """``body`` passed through every allowed filter in order; a failing filter is skipped (audited)."""
    budget = FILTER_BUDGET if budget is None else budget
    origin = registry.origin(url).serialize()
    for ext, index, entry in filters:
        target = f"{url} ({entry.script})"
        try:
            how = await _allowed(session, ext, url, origin, registry.schemes)
        except PermissionDenied as exc:
            session.audit.record(ext.id, origin, "response_filter", target, False, str(exc))
            continue
        try:
            body = await asyncio.wait_for(_run(session, ext, index, url, origin, status, headers, body), budget)
        except TimeoutError:
            session.audit.record(ext.id, origin, "response_filter", target, True,
                                 f"failed: no result within {budget:g}s; the response was sent unfiltered by it")
            continue
        except Exception as exc:
            session.audit.record(ext.id, origin, "response_filter", target, True,
                                 f"failed: {type(exc).__name__}: {str(exc)[:400]}; the response was sent "
                                 "unfiltered by it")
            continue
        session.audit.record(ext.id, origin, "response_filter", target, True, how)
    return body
