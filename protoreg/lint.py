"""Lint rules of ``protoreg check`` beyond capability inference: mistakes a manifest can validate with.

Each :class:`Lint` says what is wrong, why it matters and how to fix it, with a severity:

- ``error``: the extension does not do what its author meant (``protoreg check`` exits 1);
- ``warning``: harmless but misleading or unnecessary (exit 0, or 1 with ``--strict``).

Rules (codes are stable, for tests and for silencing in reviews):

- ``unused-grant`` (warning): a permission or host pattern the code never appears to use. Grants are
  least-authority: every unused one is authority an exploited handler could use.
- ``trustworthy-over-http`` (error): a handler claims ``uriIsTrustworthy`` but the extension fetches content over
  plain ``http://`` (a constant ``runtime.fetch("http://...")`` or an ``http://`` host permission), so a network
  attacker can inject into a page the browser treats as a secure context.
- ``icon-not-image`` (error): an icon file (``uriIcon`` or the ``icons`` key) whose bytes are not PNG, JPEG, GIF,
  WebP, ICO or SVG, whatever its name says.
- ``csp-moot`` (warning): a directive of ``content_security_policy.protocol_pages`` that the baseline policy
  already sets as strictly or more strictly, so it changes nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from yarl import URL

from protoreg.errors import InvalidPolicy
from protoreg.manifest import Manifest
from protoreg.policy import csp
from protoreg.policy.matchpatterns import parse_pattern

__all__ = ["Lint", "image_kind", "lint"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Lint:
    severity: Severity
    code: str
    where: str
    what: str
    why: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity} [{self.code}] {self.where}: {self.what}. Why: {self.why}. Fix: {self.fix}"


def image_kind(data: bytes) -> str | None:
    """The image format of ``data`` by its content (magic bytes, or an ``<svg`` root for SVG), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"<svg", b"<?xml", b"<!--", b"<!DOCTYPE svg")) and b"<svg" in data[:65536]:
        return "svg"
    return None


def _fetch_urls(files: Mapping[str, bytes]) -> tuple[list[tuple[str, int, str]], bool]:
    """Constant URLs passed to runtime.fetch (path, line, url) and whether some fetch has a computed URL."""
    found: list[tuple[str, int, str]] = []
    dynamic = False
    for path, source in sorted(files.items()):
        try:
            tree = ast.parse(source, filename=path)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func).endswith("runtime.fetch"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((path, node.lineno, arg.value))
                else:
                    dynamic = True
    return found, dynamic


def _name(f: ast.expr) -> str:
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _uses_storage(files: Mapping[str, bytes]) -> bool:
    return any(b"runtime.storage" in src or b"data_dir" in src or b"import storage" in src for src in files.values())


def _unused_grants(manifest: Manifest, files: Mapping[str, bytes]) -> Iterable[Lint]:
    if "storage" in manifest.permissions and not _uses_storage(files):
        yield Lint("warning", "unused-grant", "manifest.json permissions", 'the "storage" permission is granted '
                   "but no code uses runtime.storage or runtime.data_dir",
                   "every grant is authority an exploited handler could use", 'remove "storage" from "permissions"')
    urls, dynamic = _fetch_urls(files)
    for pattern in manifest.granted_hosts:
        if dynamic:
            break  # a computed URL may use any pattern: say nothing rather than guess
        parsed = parse_pattern(pattern)
        if not any(_matches(parsed, u) for _, _, u in urls):
            yield Lint("warning", "unused-grant", "manifest.json host_permissions",
                       f"{pattern} is granted but no runtime.fetch call fetches a URL it matches",
                       "every grant is authority an exploited handler could use",
                       f'remove "{pattern}" from host_permissions (or fetch through it)')


def _matches(pattern: object, url: str) -> bool:
    try:
        return bool(pattern.matches(URL(url)))  # type: ignore[attr-defined]
    except ValueError:
        return False


def _loopback_http(url: str) -> bool:
    """http to loopback is potentially trustworthy (Secure Contexts), so it is not a plain-http mistake."""
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].lower()
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    return host in ("localhost", "::1") or host.endswith(".localhost") or host.startswith("127.")


def _trustworthy_over_http(manifest: Manifest, files: Mapping[str, bytes]) -> Iterable[Lint]:
    claims = [h.protocol for h in manifest.protocol_handlers if h.uriIsTrustworthy]
    if not claims:
        return
    why = (f"{', '.join(claims)} claims uriIsTrustworthy, so its pages are secure contexts, but content fetched "
           "over plain http can be altered by anyone on the network path")
    urls, _ = _fetch_urls(files)
    for path, line, url in urls:
        if url.lower().startswith("http://") and not _loopback_http(url):
            yield Lint("error", "trustworthy-over-http", f"{path}:{line}", f"fetches {url} over plain http", why,
                       "fetch it over https (and grant https:// instead), or drop uriIsTrustworthy")
    for pattern in manifest.granted_hosts:
        if pattern.lower().startswith(("http://", "*://")) and not _loopback_http(pattern):
            yield Lint("error", "trustworthy-over-http", "manifest.json host_permissions",
                       f"{pattern} grants plain-http fetches", why,
                       f'grant "https://{pattern.split("://", 1)[1]}" instead, or drop uriIsTrustworthy')


def _icons(manifest: Manifest, root: Path) -> Iterable[Lint]:
    named: list[tuple[str, str]] = [(f"protocol_handlers ({h.protocol}) uriIcon", h.uriIcon)
                                    for h in manifest.protocol_handlers if h.uriIcon]
    extra = (manifest.model_extra or {}).get("icons")
    if isinstance(extra, Mapping):
        named += [(f"icons[{size!r}]", p) for size, p in extra.items() if isinstance(p, str)]
    for where, rel in named:
        path = root / rel
        try:
            if not path.resolve().is_relative_to(root.resolve()):
                raise OSError("outside the bundle")
            data = path.read_bytes()
        except OSError as exc:
            yield Lint("error", "icon-not-image", f"manifest.json {where}", f"the icon {rel} can't be read "
                       f"({getattr(exc, 'strerror', None) or exc})", "the dashboard and browsers show nothing",
                       f"add {rel} to the bundle or fix the path")
            continue
        if image_kind(data) is None:
            start = data[:16]
            yield Lint("error", "icon-not-image", f"manifest.json {where}",
                       f"{rel} is not an image (its content starts with {start!r})",
                       "browsers and the dashboard refuse an icon whose bytes are not PNG, JPEG, GIF, WebP, ICO or "
                       "SVG, whatever its file name says",
                       f"replace {rel} with a real image (an SVG is a text file starting with <svg)")


def _moot_csp(manifest: Manifest) -> Iterable[Lint]:
    text = manifest.content_security_policy.protocol_pages if manifest.content_security_policy else None
    if not text:
        return
    try:
        policy = csp.parse_serialized_policy(text)
    except InvalidPolicy:
        return
    for name, values in policy.directives.items():
        base = csp.BASELINE.directives.get(name)
        if base is None:
            continue
        ours = [v.lower() for v in values]
        # Every policy is enforced, so ours only matters when it forbids something the baseline allows.
        moot = base == ["'none'"] or all(b in ours or "*" in ours for b in base)
        if moot:
            yield Lint("warning", "csp-moot", "manifest.json content_security_policy.protocol_pages",
                       f"{name} {' '.join(values) or '(empty)'} changes nothing",
                       f"every response already carries the baseline policy {name} {' '.join(base)}, which is as "
                       "strict or stricter, and a resource must pass every policy",
                       f"remove {name} from protocol_pages (or make it stricter than {' '.join(base)})")


def lint(root: str | Path, manifest: Manifest, files: Mapping[str, bytes]) -> list[Lint]:
    """Every finding for the extension at ``root`` (``files``: its Python sources), errors first."""
    found = [*_trustworthy_over_http(manifest, files), *_icons(manifest, Path(root)),
             *_unused_grants(manifest, files), *_moot_csp(manifest)]
    return sorted(found, key=lambda x: x.severity != "error")
