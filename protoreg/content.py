"""Content scripts on custom schemes: which extensions' JS/CSS go into an HTML page the gateway serves, how they
are served (from a reserved path on the page's own origin) and the narrowest CSP change that lets them load.

A manifest's ``content_scripts`` entry matches pages with match patterns over registered schemes (``ipfs://*/*``,
``web+foo://example/*``; ``<all_urls>`` is every registered scheme). An entry applies when a page matches one of
``matches`` and none of ``exclude_matches``, the extension holds a host permission covering the page (its
effective grants), and the permission manager's decision for that host permission allows it (it may prompt).

The gateway adds ``<script src=/.well-known/protoreg/content/<ext>/<file> integrity=sha256-…>`` and ``<link
rel=stylesheet …>`` elements. The page's CSP still governs everything else: for each enforced policy that would
block such an element, a ``script-src-elem`` (``style-src-elem``) directive is added or extended with exactly one
source naming that file, by hash for scripts (CSP3 hash-source matching a script element's integrity metadata), by
its exact URL for styles and for script lists that allow all inline scripts (a hash there would turn
``'unsafe-inline'`` off for the page's own inline scripts). Nothing else of the page's policy changes, so its own
inline scripts stay exactly as allowed or blocked as before. See docs/handlers.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from yarl import URL

from protoreg.policy import csp
from protoreg.policy.matchpatterns import parse_pattern

if TYPE_CHECKING:
    from protoreg.manifest import ContentScript
    from protoreg.registry import Extension

__all__ = ["MAX_FILE", "MAX_HTML", "PREFIX", "Injection", "adjust_csp", "candidates", "file_path", "granted_pattern",
           "inject_html", "is_html", "load_file", "pattern_matches", "resolve_file"]

#: The reserved path on every custom origin under which content script files are served.
PREFIX = "/.well-known/protoreg/content/"
#: Largest content script file, and largest HTML page that gets content scripts (larger pages are left alone).
MAX_FILE = 1024 * 1024
MAX_HTML = 8 * 1024 * 1024
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_cache: dict[tuple[str, str, int, int], tuple[bytes, str]] = {}


def pattern_matches(pattern: str, url: URL, registered: Iterable[str]) -> bool:
    """Whether a content-script or host-permission match pattern covers ``url``; ``<all_urls>`` is every
    registered scheme (and http(s)/ws(s), as for host permissions)."""
    if pattern == "<all_urls>":
        return url.scheme in registered or parse_pattern(pattern).matches(url)
    try:
        return parse_pattern(pattern).matches(url)
    except ValueError:
        return False


def granted_pattern(ext: Extension, url: URL, registered: Iterable[str]) -> str | None:
    """The first of the extension's effective host permissions that covers ``url`` (None: it holds none)."""
    from protoreg.broker import Grants

    registered = set(registered)
    return next((p.text for p in Grants.from_extension(ext).hosts if pattern_matches(p.text, url, registered)), None)


def candidates(extensions: Iterable[Extension], url: URL, registered: Iterable[str]
               ) -> list[tuple[Extension, ContentScript]]:
    """Every (extension, entry) whose ``matches`` cover ``url`` and whose ``exclude_matches`` don't, in install
    order then manifest order (permissions not checked yet)."""
    registered = set(registered)
    out = []
    for ext in extensions:
        for entry in getattr(ext.manifest, "content_scripts", None) or ():
            if any(pattern_matches(p, url, registered) for p in entry.matches) and not any(
                    pattern_matches(p, url, registered) for p in entry.exclude_matches):
                out.append((ext, entry))
    return out


def file_path(ext_id: str, path: str) -> str:
    """The reserved URL path of one content script file on the page's own origin."""
    return PREFIX + quote(ext_id, safe="@.-_") + "/" + quote(path, safe="/.-_")


def load_file(ext: Extension, path: str) -> tuple[bytes, str]:
    """A content script file's bytes and its ``sha256-<base64>`` (inside the bundle only, at most MAX_FILE
    bytes; cached while the file is unchanged)."""
    root = Path(ext.root).resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root) or not full.is_file():
        raise FileNotFoundError(f"content script {path} of {ext.id} is not a file inside its bundle")
    # The bundle digest covers Python files only, so the file's own identity keys the cache. A file that changes
    # between a page and its load fails the integrity check in the browser: never a different script.
    st = full.stat()
    key = (ext.id, str(full), st.st_mtime_ns, st.st_size)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    data = full.read_bytes()[:MAX_FILE + 1]
    if len(data) > MAX_FILE:
        raise ValueError(f"content script {path} of {ext.id} is over {MAX_FILE} bytes")
    value = (data, "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode())
    if len(_cache) >= 256:  # bounded: files that keep changing don't pile up
        _cache.clear()
    _cache[key] = value
    return value


def resolve_file(extensions: dict[str, Extension], url: URL, raw_path: str, registered: Iterable[str]
                 ) -> tuple[Extension, str, str] | None:
    """For a request of ``PREFIX<ext>/<file>`` on the origin of ``url``: (extension, file, content type) when
    that extension lists the file in a content script entry that can match pages of this origin and holds a host
    permission for this origin; else None."""
    rest = raw_path.split("?", 1)[0][len(PREFIX):]
    ext_id, _, path = rest.partition("/")
    ext = extensions.get(unquote(ext_id))
    path = unquote(path)
    ctype = _TYPES.get(Path(path).suffix)
    if ext is None or ctype is None:
        return None
    registered = set(registered)
    origin_any = url.with_path("/").with_query(None)
    from protoreg.broker import Grants

    if not any(_same_origin_possible(p.text, origin_any, registered) for p in Grants.from_extension(ext).hosts):
        return None  # no host permission for this origin: it never injects here, so nothing is served here
    for entry in getattr(ext.manifest, "content_scripts", None) or ():
        if path in (*entry.js, *entry.css) and any(_same_origin_possible(p, origin_any, registered)
                                                   for p in entry.matches):
            return ext, path, ctype
    return None


def _same_origin_possible(pattern: str, origin: URL, registered: set[str]) -> bool:
    """Whether ``pattern`` can match some page of ``origin`` (its scheme and host; any path)."""
    if pattern == "<all_urls>":
        return origin.scheme in registered
    try:
        p = parse_pattern(pattern)
    except ValueError:
        return False
    port = "" if p.port == "*" else f":{p.port}"
    return parse_pattern(f"{p.scheme}://{p.host}{port}/*").matches(origin)


def is_html(headers: Any) -> bool:
    return headers.get("Content-Type", "").split(";", 1)[0].strip().lower() in ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class Injection:
    """One file to inject: where it is served, its integrity, and where in the page it goes."""

    ext_id: str
    path: str          # bundle path
    url_path: str      # PREFIX...
    kind: str          # "js" or "css"
    integrity: str     # sha256-...
    run_at: str

    def tag(self) -> str:
        attrs = f'data-protoreg-content="{_attr(self.ext_id)}" integrity="{self.integrity}"'
        if self.kind == "css":
            return f'<link rel="stylesheet" href="{_attr(self.url_path)}" {attrs}>'
        defer = " defer" if self.run_at == "document_idle" else ""
        return f'<script src="{_attr(self.url_path)}" {attrs}{defer}></script>'


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


_HEAD_OPEN = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML_OPEN = re.compile(rb"<html(?:\s[^>]*)?>", re.IGNORECASE)
_BODY_CLOSE = re.compile(rb"</body\s*>", re.IGNORECASE)


def inject_html(body: bytes, injections: Sequence[Injection]) -> bytes:
    """The page with document_start files first in <head> (or after <html>, or at the start) and the others
    before the last </body> (or at the end)."""
    start = "".join(i.tag() for i in injections if i.run_at == "document_start").encode()
    end = "".join(i.tag() for i in injections if i.run_at != "document_start").encode()
    if start:
        m = _HEAD_OPEN.search(body) or _HTML_OPEN.search(body)
        body = body[:m.end()] + start + body[m.end():] if m else start + body
    if end:
        last = None
        for last in _BODY_CLOSE.finditer(body):  # noqa: B007 - the last one
            pass
        body = body[:last.start()] + end + body[last.start():] if last else body + end
    return body


def _allows_url_without_change(sources: list[str]) -> bool:
    """Whether a source list certainly allows a same-origin URL already ('self', or '*'), and no
    'strict-dynamic' makes it ignore those."""
    lowered = [s.lower() for s in sources]
    return "'strict-dynamic'" not in lowered and ("'self'" in lowered or "*" in lowered)


def adjust_csp(headers: list[tuple[str, str]], injections: Sequence[Injection], origin: str
               ) -> list[tuple[str, str]]:
    """The response headers with each enforced CSP that would block an injected file given exactly one source for
    it (see the module docstring); other headers and report-only policies unchanged."""
    if not injections or not any(n.lower() == csp.HEADER_ENFORCE.lower() for n, _ in headers):
        return headers
    policies = csp.parse_response_policies(headers)
    changed = False
    for policy in policies:
        if policy.disposition != "enforce":
            continue
        for inj in injections:
            directive = "script-src-elem" if inj.kind == "js" else "style-src-elem"
            governing = next((policy.directives[d] for d in csp.fallback_list(directive) if d in policy.directives),
                             None)
            if governing is None or _allows_url_without_change(governing):
                continue
            url_source = origin + inj.url_path
            if inj.kind == "js" and not csp.allows_inline([csp.Policy({directive: governing})], directive):
                source = f"'{inj.integrity}'"       # a hash cancels nothing here: inline was not allowed anyway
            else:
                source = url_source                 # keeps 'unsafe-inline' (styles: hashes don't cover files)
            values = [v for v in governing if v.lower() != "'none'"]
            if source not in values:
                values.append(source)
            policy.directives[directive] = values
            changed = True
    if not changed:
        return headers
    kept = [(n, v) for n, v in headers if n.lower() not in (csp.HEADER_ENFORCE.lower(), csp.HEADER_REPORT.lower())]
    return kept + csp.csp_header_items(policies)
