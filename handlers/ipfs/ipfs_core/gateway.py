"""HTTP semantics of an IPFS path/subdomain gateway (ipfs specs http-gateways), framework-independent.

Multi-range requests are answered with the first range only (a 206 for it), as several gateways do; multipart
byteranges are not produced. A generated directory listing is not immutable (its HTML is this code's, not the
DAG's): it gets ``ETag: "DirIndex-<version>_CID-<dir cid>"`` and no Cache-Control, as kubo does.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlencode

from multiformats import CID

from ipfs_core import BlockNotFound, InvalidCID, IpfsError, NoSuchPath, redirects
from ipfs_core.blocks import BlockStore
from ipfs_core.car import write_car
from ipfs_core.cids import _hash_info, is_identity, parse_cid, v1_base32
from ipfs_core.unixfs import Entry, UnixFS, symlink_target

IMMUTABLE = "public, max-age=29030400, immutable"
#: Listings and error pages run no script and load nothing; their one stylesheet is inline, the icon a data: URL.
LISTING_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
# Changes whenever the listing's HTML changes, so cached listings are revalidated.
_LISTING_VERSION = hashlib.sha256(b"protoreg listing v3: name, file size, kind, wrapped cid").hexdigest()[:12]
_ICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'%3E%3Cpath "
         "d='M32 4l25 14v28L32 60 7 46V18z' fill='%2365c2cb'/%3E%3Cpath d='M32 4l25 14-25 14L7 18z' fill='%23469ea2'"
         "/%3E%3C/svg%3E")
_CSS = ("body{font:15px/1.55 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:58rem;margin:2rem auto;"
        "padding:0 1.25rem;color:#1d1d1f;background:#fafafa}a{color:#0b57d0;text-decoration:none}"
        "a:hover{text-decoration:underline}h1{font-size:1.35rem;margin:.3rem 0 .2rem;overflow-wrap:anywhere}"
        ".path{color:#5f6368;font:13px ui-monospace,monospace;overflow-wrap:anywhere;margin-bottom:1.2rem}"
        ".brand{color:#469ea2;font-weight:600;font-size:.9rem;letter-spacing:.02em}"
        "table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e3e5e8;border-radius:8px}"
        "th,td{padding:.45rem .7rem;text-align:left;border-bottom:1px solid #eef0f3;vertical-align:top}"
        "th{background:#f3f4f6;font-weight:600;font-size:.85rem;color:#3c4043}tr:last-child td{border-bottom:0}"
        "td.size{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}th.size{text-align:right}"
        "td.cid code{font:12px ui-monospace,monospace;color:#5f6368;overflow-wrap:anywhere;word-break:break-all}"
        ".kind{color:#5f6368;font-size:.85rem}.name{overflow-wrap:anywhere}.dir:after{content:'/'}"
        ".why{background:#fff4f2;border-left:4px solid #d33;padding:.7rem 1rem;border-radius:0 6px 6px 0;"
        "overflow-wrap:anywhere}.muted{color:#5f6368;font-size:.9rem}code{overflow-wrap:anywhere}h2{font-size:1.1rem}"
        "p code{background:#eef0f3;padding:.1rem .3rem;border-radius:3px}"
        "@media (max-width:40rem){td.cid,th.cid{display:none}}")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_FORMATS = {"raw": "application/vnd.ipld.raw", "car": "application/vnd.ipld.car"}
# Our own table: the mimetypes module reads /etc/mime.types on first use, which the sandbox rightly denies.
_EXTRA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon", ".pdf": "application/pdf",
                ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                ".wav": "audio/wav", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
                ".otf": "font/otf", ".xml": "application/xml", ".csv": "text/csv", ".zip": "application/zip",
                ".gz": "application/gzip", ".tar": "application/x-tar", ".car": "application/vnd.ipld.car",
                ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                ".wasm": "application/wasm", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".md": "text/markdown"}


@dataclass
class GatewayResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterator[bytes] = b""


def _error(status: int, message: str) -> GatewayResponse:
    return GatewayResponse(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("X-Content-Type-Options", "nosniff")], (message + "\n").encode())


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            f"<title>{escape(title)}</title><link rel=icon href=\"{_ICON}\"><style>{_CSS}</style>"
            f"<div class=brand>IPFS</div>{body}").encode()


_NEXT = {
    400: "Check the address: an ipfs:// host is a CIDv1 (bafy..., lowercase base32).",
    404: "Check the spelling of the path, or go back to the site's front page. If the whole site is missing, import "
         "its CAR file with: protoreg ipfs import FILE.car",
    405: "ipfs:// content is read-only: open it with GET (a link or the address bar).",
    406: "Ask for text/html, application/vnd.ipld.raw or application/vnd.ipld.car.",
    412: "Import the content first (protoreg ipfs import FILE.car), or drop only-if-cached.",
}


def _commands(text: str) -> str:
    return text.replace("protoreg ipfs import FILE.car", "<code>protoreg ipfs import FILE.car</code>")


def wants_html(headers: dict[str, str]) -> bool:
    """The client reads pages (a browser navigation), not plain text (curl, fetch())."""
    return "text/html" in headers.get("accept", "").lower()


def error_page(status: int, message: str, path: str = "") -> GatewayResponse:
    """A styled error page: what happened, why, what to try, and links back (no script, nothing loaded)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    hint = _NEXT.get(status, "The content could not be served as stored: a block is corrupt or malformed. "
                             "Re-import the site's CAR file; every block is verified again on the way out.")
    where = f"<p class=muted>Address: <code>{escape(path)}</code></p>" if path else ""
    body = _page(f"{status} {phrase}", f"<h1>{status} {escape(phrase)}</h1><p class=why>{escape(message)}</p>"
                 f"{where}<h2>What to try</h2><p>{_commands(escape(hint))}</p><ul><li><a href=\"/\">this site's front "
                 "page</a></li><li><a href=\"..\">the parent directory</a></li></ul>")
    return GatewayResponse(status, [("Content-Type", "text/html; charset=utf-8"), ("X-Content-Type-Options",
                                    "nosniff"), ("Content-Security-Policy", LISTING_CSP),
                                    ("Content-Length", str(len(body)))], body)


def _sniff(head: bytes) -> str:
    h = head.lstrip()[:512].lower()
    if h.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "text/html; charset=utf-8"
    for magic, ctype in ((b"\x89png", "image/png"), (b"gif8", "image/gif"), (b"\xff\xd8\xff", "image/jpeg"),
                         (b"%pdf", "application/pdf"), (b"<svg", "image/svg+xml"), (b"\x00asm", "application/wasm")):
        if h.startswith(magic):
            return ctype
    try:
        head[:512].decode("utf-8")
        return "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        return "application/octet-stream"


def _content_type(fs: UnixFS, entry: Entry, name: str) -> str:
    suffix = ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ""
    return _EXTRA_TYPES.get(suffix) or _sniff(b"".join(fs.read(entry, 0, 512)))


def _not_modified(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """RFC 9110 If-None-Match: "*" or any listed tag matching one of ours by weak comparison (W/ ignored)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or any(t in etags for t in tags)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(start, end_exclusive), None to ignore the header, or "unsatisfiable"."""
    first = value.split(",", 1)[0].strip()  # multi-range: the first range only
    m = _RANGE.match(first)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        return (max(0, size - n), size) if n and size else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, min(end, size)


def _size_of(fs: UnixFS, item: Any) -> tuple[str, int | None]:
    """(kind, file size) of a listed entry: the file's own size, not the DAG's (a link's Tsize counts blocks)."""
    try:
        entry = fs.load(item.cid)
    except IpfsError:
        return "unavailable", None
    return entry.kind, entry.size if entry.kind == "file" else None


def _human(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:,.1f} {unit}"


def _listing(fs: UnixFS, entry: Entry, url_path: str, ipfs_path: str) -> bytes:
    rows = []
    base = url_path if url_path.endswith("/") else url_path + "/"
    if base != "/":
        rows.append('<tr><td class=name><a href="..">..</a> <span class=kind>(parent directory)</span></td>'
                    "<td class=size></td><td class=cid></td></tr>")
    items = fs.list(entry)
    total = 0
    for item in items:
        href = base + quote(item.name)
        kind, size = _size_of(fs, item)
        link_class = ' class="dir"' if kind == "directory" else ""
        note = "" if kind in ("file", "directory") else f" <span class=kind>({escape(kind)})</span>"
        size_cell = ("<td class=size>—</td>" if size is None else
                     f'<td class=size title="{size:,} bytes">{_human(size)}</td>')
        rows.append(f'<tr><td class=name><a{link_class} href="{escape(href)}">{escape(item.name)}</a>{note}</td>'
                    f"{size_cell}<td class=cid><code>{escape(v1_base32(item.cid))}</code></td></tr>")
        total += 1
    title = url_path if url_path not in ("", "/") else "/"
    count = f"{total} entr{'y' if total == 1 else 'ies'}"
    return _page(f"Index of {ipfs_path}", (
        f"<h1>Index of {escape(title)}</h1><div class=path>{escape(ipfs_path)} · {count}</div>"
        "<table><tr><th>Name</th><th class=size>Size</th><th class=cid>CID</th></tr>" + "".join(rows) + "</table>"))


def _pieces(parts: Iterator[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    """Re-cut a stream into pieces of exactly ``size`` (the last one shorter): a CAR section is a block plus a few
    bytes, which would otherwise cost a second, tiny frame per block on the way out."""
    buf = bytearray()
    for part in parts:
        buf += part
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _entity_bytes(value: str, size: int) -> tuple[int, int]:
    """``entity-bytes=from:to`` (trustless gateway spec): inclusive, negative counts from the end, ``*`` is the end;
    returns [start, end) clamped to the file. Raises ValueError for a malformed value."""
    lo_text, sep, hi_text = value.partition(":")
    if not sep:
        raise ValueError(value)
    lo = int(lo_text)
    start = max(0, size + lo) if lo < 0 else min(lo, size)
    if hi_text == "*":
        end = size
    else:
        hi = int(hi_text)
        end = max(0, size + hi + 1) if hi < 0 else min(hi + 1, size)
        if hi >= 0 and hi < lo:
            raise ValueError(value)
    return start, max(start, end)


def _car_blocks(fs: UnixFS, trail: list[CID], entry: Entry, scope: str = "all",
                byte_range: tuple[int, int] | None = None) -> Iterator[tuple[CID, bytes]]:
    """Per the trustless gateway spec: the blocks that verify the path from the root (``trail``: every block the
    path walk read, HAMT sub-shards included), then the path's end in the
    requested ``dag-scope`` (block: its own block; entity: a file's blocks (within ``entity-bytes``) or a
    directory's node and HAMT shards; all: the whole DAG under it), depth-first, each block once, identity CIDs
    left out (their bytes are in the CID)."""
    seen: set[bytes] = set()
    path_blocks = ((cid, fs.store.get(cid)) for cid in trail[:-1])
    if scope == "block":
        tail: Iterator[tuple[CID, bytes]] = iter([(trail[-1], fs.store.get(trail[-1]))])
    elif scope == "entity" and entry.kind == "file":
        start, end = byte_range if byte_range is not None else (0, entry.size)
        tail = fs.range_blocks(entry, start, end)
    elif scope == "entity":
        tail = fs.entity_blocks(entry)
    else:
        tail = fs.walk(trail[-1])
    for cid, data in itertools.chain(path_blocks, tail):
        key = _hash_info(cid)[2]
        if key not in seen and not is_identity(cid):
            seen.add(key)
            yield cid, data


def respond(store: BlockStore, method: str, host: str, path: str, query: dict[str, str],
            headers: dict[str, str], slices: Any = None) -> GatewayResponse:
    """Answer ``method ipfs://host/path?query`` with the gateway's semantics. ``headers`` keys are lowercase.
    ``slices``: see :attr:`UnixFS.slices` (file bodies then carry leaves by reference).

    Errors found before the body starts (a bad CID, a missing or corrupt block, a malformed node) become error
    responses; a block found missing or corrupt while the body streams raises from the body iterator, so the HTTP
    layer aborts the stream rather than sending wrong bytes."""
    try:
        fs = UnixFS(store)
        fs.slices = slices
        res = _respond(fs, store, method, host, path, query, headers)
    except IpfsError as exc:
        res = _error(exc.status, str(exc))
    if res.status >= 400 and isinstance(res.body, bytes) and res.body and wants_html(headers) and (
            dict(res.headers).get("Content-Type", "").startswith("text/plain")):
        page = error_page(res.status, res.body.decode("utf-8", "replace").strip(), f"ipfs://{host}{path}")
        if method == "HEAD":
            page.body = b""
        return page
    return res


def _redirect_rules(fs: UnixFS, root: CID) -> list[redirects.Rule] | None:
    """The root directory's ``_redirects`` rules, None without one. Every ipfs:// and ipns:// origin is one root
    (origin isolation), so the file always applies to requests for content (never to raw/CAR/record responses)."""
    key = _hash_info(root)[2]
    if key in _RULES:
        return _RULES[key]
    entry = fs.load(root)
    if entry.kind != "directory":
        return None
    cid = fs.lookup(entry, "_redirects")
    if cid is None:
        return None
    f = fs.load(cid)
    if f.kind != "file":
        raise redirects.RedirectsError("_redirects is not a file")
    if f.size > redirects.MAX_SIZE:
        raise redirects.RedirectsError(f"the file is {f.size} bytes, over the {redirects.MAX_SIZE}-byte limit")
    rules = redirects.parse(b"".join(fs.read(f)))
    if len(_RULES) > 256:
        _RULES.clear()
    _RULES[key] = rules  # a root's rules never change: it is content-addressed
    return rules


_RULES: dict[bytes, list[redirects.Rule] | None] = {}


def _apply_redirect(fs: UnixFS, store: BlockStore, method: str, host: str, query: dict[str, str],
                    headers: dict[str, str], rule: redirects.Rule, target: str) -> GatewayResponse:
    if rule.status in (301, 302, 303, 307, 308):
        return GatewayResponse(rule.status, [("Location", target), ("Content-Length", "0")], b"")
    path = target.split("?", 1)[0]
    res = _respond(fs, store, method, host, quote(path), {}, headers, use_redirects=False)
    if res.status == 200 and rule.status != 200:
        res.status = rule.status  # the page (with its own ETag) under the rule's status, not cached for a year
        res.headers = [(k, v) for k, v in res.headers if k.lower() != "cache-control"]
    return res


def _respond(fs: UnixFS, store: BlockStore, method: str, host: str, path: str, query: dict[str, str],
             headers: dict[str, str], use_redirects: bool = True) -> GatewayResponse:
    try:
        root = parse_cid(host)
    except InvalidCID as exc:
        return _error(400, str(exc))
    if root.version == 0:
        return GatewayResponse(301, [("Location", f"ipfs://{v1_base32(root)}{path}")])
    fmt = query.get("format")
    if fmt is not None and fmt not in _FORMATS:
        return _error(400, f"unsupported ?format={fmt}; supported: raw, car")
    accept = headers.get("accept", "")
    if fmt is None:
        wanted = [t.split(";")[0].strip() for t in accept.split(",") if t.strip()]
        fmt = next((k for k, v in _FORMATS.items() if v in wanted), None)
        if fmt is None and wanted and all(t.startswith("application/vnd.ipld.") for t in wanted):
            return _error(406, f"none of the requested formats ({accept}) is supported; use "
                               "application/vnd.ipld.raw or application/vnd.ipld.car")
    if "only-if-cached" in headers.get("cache-control", "") and not store.has(root):
        return _error(412, f"{v1_base32(root)} is not in the local block store and the request said only-if-cached")
    rules = None
    if fmt is None and use_redirects:
        rules = _redirect_rules(fs, root)  # raises RedirectsError (a 500 that says so)
        hit = redirects.find(rules, unquote(path) or "/", forced_only=True) if rules else None
        if hit is not None:
            return _apply_redirect(fs, store, method, host, query, headers, *hit)
    proof: list[CID] = []
    try:
        entry, trail = fs.resolve(root, path, proof)
    except NoSuchPath as exc:
        hit = redirects.find(rules, unquote(path) or "/") if rules else None
        if hit is not None:
            return _apply_redirect(fs, store, method, host, query, headers, *hit)
        return _error(404, str(exc))
    except BlockNotFound as exc:
        return _error(404, str(exc))
    except IpfsError as exc:
        return _error(exc.status, str(exc))
    ipfs_path = f"/ipfs/{v1_base32(root)}{path}"
    common = [("X-Ipfs-Path", ipfs_path), ("X-Ipfs-Roots", ",".join(v1_base32(c) for c in trail)),
              ("Cache-Control", IMMUTABLE)]
    etag_base = v1_base32(entry.cid)
    if fmt is not None:
        variant = ""
        if fmt == "car" and ("dag-scope" in query or "entity-bytes" in query):  # another set of blocks, another tag
            variant = "." + hashlib.sha256(f"{query.get('dag-scope')}|{query.get('entity-bytes')}".encode()
                                           ).hexdigest()[:12]
        etag = f'"{etag_base}.{fmt}{variant}"'
        common += [("ETag", etag), ("X-Content-Type-Options", "nosniff"), ("Vary", "Accept")]
        if _not_modified(headers.get("if-none-match"), (etag,)):
            return GatewayResponse(304, common)
        disposition = ("Content-Disposition", f'attachment; filename="{etag_base}.{"bin" if fmt == "raw" else fmt}"')
        if fmt == "raw":
            data = store.get(entry.cid)
            return GatewayResponse(200, [*common, ("Content-Type", _FORMATS["raw"]), disposition,
                                         ("Content-Length", str(len(data)))], b"" if method == "HEAD" else data)
        scope = query.get("dag-scope", "all")
        if scope not in ("block", "entity", "all"):
            return _error(400, f"unsupported dag-scope={scope}; use block, entity or all")
        byte_range = None
        if "entity-bytes" in query:
            if scope != "entity":
                return _error(400, "entity-bytes only applies with dag-scope=entity")
            try:
                byte_range = _entity_bytes(query["entity-bytes"], entry.size) if entry.kind == "file" else None
            except ValueError:
                return _error(400, f"entity-bytes={query['entity-bytes']} is not from:to (integers, to may be *)")
        body = _pieces(write_car([root], _car_blocks(fs, proof, entry, scope, byte_range)))
        return GatewayResponse(200, [*common, ("Content-Type", _FORMATS["car"] + "; version=1; order=dfs; dups=n"),
                                     disposition], iter(()) if method == "HEAD" else body)
    etag = f'"{etag_base}"'
    if entry.kind == "directory":
        if not path.endswith("/"):
            return GatewayResponse(301, [("Location", (path or "") + "/" + ("?" + urlencode(query) if query else ""))])
        index = fs.lookup(entry, "index.html")
        if index is None:
            listing_etag = f'"DirIndex-{_LISTING_VERSION}_CID-{etag_base}"'
            common = [*common[:2], ("ETag", listing_etag)]  # generated HTML: not immutable
            if _not_modified(headers.get("if-none-match"), (listing_etag, etag)):
                return GatewayResponse(304, common)
            page = _listing(fs, entry, path, ipfs_path)
            return GatewayResponse(200, [*common, ("Content-Type", "text/html; charset=utf-8"),
                                         ("Content-Security-Policy", LISTING_CSP),
                                         ("Content-Length", str(len(page)))], b"" if method == "HEAD" else page)
        entry, name = fs.load(index), "index.html"
    else:
        name = path.rsplit("/", 1)[-1]
    common.append(("ETag", etag))
    if _not_modified(headers.get("if-none-match"), (etag,)):
        return GatewayResponse(304, common)
    if entry.kind == "symlink":
        target = symlink_target(entry).encode()
        return GatewayResponse(200, [*common, ("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(target)))], b"" if method == "HEAD" else target)
    size = entry.size
    ctype = _content_type(fs, entry, name)
    out = [*common, ("Content-Type", ctype), ("Accept-Ranges", "bytes")]
    rng = _parse_range(headers.get("range", ""), size) if headers.get("range") else None
    if rng == "unsatisfiable":
        return GatewayResponse(416, [*out, ("Content-Range", f"bytes */{size}")], b"")
    if isinstance(rng, tuple):
        start, end = rng
        return GatewayResponse(206, [*out, ("Content-Range", f"bytes {start}-{end - 1}/{size}"),
                                     ("Content-Length", str(end - start))],
                               iter(()) if method == "HEAD" else fs.read(entry, start, end, by_reference=True))
    return GatewayResponse(200, [*out, ("Content-Length", str(size))],
                           iter(()) if method == "HEAD" else fs.read(entry, by_reference=True))
