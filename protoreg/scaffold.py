"""``protoreg new``: write a working extension (manifest, handler, SVG icon, a pytest test, README).

Templates:

- ``basic``: an HTML page per host, potentially trustworthy, no grants;
- ``streaming``: echoes a POSTed body back chunk by chunk, and streams a generated body on GET;
- ``sandboxed``: no grants at all and a strict ``content_security_policy.protocol_pages`` (no scripts, no
  network, no frames). The manifest has no named sandboxes, so this is "least authority plus a strict CSP".

Every generated extension passes ``protoreg check --strict`` and its own test (``tests/test_extension.py``, which
uses the ``protoreg_registry`` fixture of the pytest plugin and needs no pytest configuration).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Final

from protoreg.errors import ProtoregError

__all__ = ["TEMPLATES", "ScaffoldError", "scaffold"]

TEMPLATES: Final = ("basic", "streaming", "sandboxed")
_SCHEME: Final = re.compile(r"(web|ext)\+[a-z]+")


class ScaffoldError(ProtoregError, ValueError):
    """``protoreg new`` can't write the extension (bad scheme, directory not empty)."""


_ICON: Final = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
  <rect width="64" height="64" rx="12" fill="#2b6cb0"/>
  <text x="32" y="42" font-family="sans-serif" font-size="28" text-anchor="middle" fill="#fff">{letter}</text>
</svg>
"""

_BASIC: Final = '''"""{scheme}:// handler: one HTML page per host."""

import html

from protoreg import Request, Response


async def handleRequest(request: Request) -> Response:
    if request.url.path != "/":
        return Response.error(404)
    host = html.escape(request.url.host or "")
    return Response(f"<!doctype html><title>{{host}}</title><h1>Hello from {scheme}://{{host}}/</h1>",
                    headers={{"Content-Type": "text/html; charset=utf-8"}})
'''

_STREAMING: Final = '''"""{scheme}:// handler: GET streams a generated body; POST echoes the body back as it arrives."""

from protoreg import Request, Response


async def handleRequest(request: Request) -> Response:
    if request.method == "POST":
        async def echo():
            async for chunk in request.stream():  # backpressure from the caller...
                yield chunk                       # ...and to the caller
        return Response(echo(), headers={{"Content-Type": "application/octet-stream"}})

    async def count():
        for i in range(1, 6):
            yield f"line {{i}}\\n".encode()
    return Response(count(), headers={{"Content-Type": "text/plain; charset=utf-8"}})
'''

_SANDBOXED: Final = '''"""{scheme}:// handler with no grants (no storage, no network); its pages may run no script."""

import html

from protoreg import Request, Response


async def handleRequest(request: Request) -> Response:
    if request.url.path != "/":
        return Response.error(404)
    host = html.escape(request.url.host or "")
    return Response(f"<!doctype html><title>{{host}}</title><p>{scheme}://{{host}}/ has no authority at all.</p>",
                    headers={{"Content-Type": "text/html; charset=utf-8"}})
'''

_STRICT_CSP: Final = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'none'"

_TEST: Final = '''"""The extension's own test (pytest, with protoreg's plugin: the protoreg_registry fixture)."""

import asyncio
from pathlib import Path

import protoreg

HERE = Path(__file__).resolve().parents[1]


def fetch(registry, url, **kw):
    async def run():
        async with protoreg.Session(registry) as session:
            resp = await session.fetch(url, **kw)
            return resp.status, resp.headers, await resp.read()
    return asyncio.run(run())


def test_{name}(protoreg_registry):
    protoreg_registry.install(HERE)
{body}
'''

_TEST_BODIES: Final = {
    "basic": '''    status, headers, body = fetch(protoreg_registry, "{scheme}://example/")
    assert status == 200 and b"Hello from {scheme}://example/" in body
    assert fetch(protoreg_registry, "{scheme}://example/missing")[0] == 404
    # every host is its own origin
    assert not protoreg_registry.origin("{scheme}://a/").same_origin(protoreg_registry.origin("{scheme}://b/"))''',
    "streaming": '''    status, headers, body = fetch(protoreg_registry, "{scheme}://example/")
    assert status == 200 and body.count(b"line ") == 5
    status, headers, body = fetch(protoreg_registry, "{scheme}://example/", method="POST", body=b"x" * 100_000)
    assert status == 200 and body == b"x" * 100_000''',
    "sandboxed": '''    status, headers, body = fetch(protoreg_registry, "{scheme}://example/")
    assert status == 200 and b"no authority" in body
    csp = " ".join(v for k, v in headers.items() if k.lower() == "content-security-policy")
    assert "default-src 'none'" in csp''',
}

_README: Final = """# {title}

A protoreg extension for `{scheme}://` (template: {template}).

- `manifest.json`: the scheme, its handler script and icon{grants_note}.
- `handler.py`: `async def handleRequest(request) -> Response`.
- `icon.svg`: the icon the dashboard shows.
- `tests/test_extension.py`: its test, using protoreg's pytest plugin.

```sh
protoreg check .                       # manifest problems, ungranted capabilities, lint rules
python -m pytest tests -q              # the test
protoreg serve -e . --reload           # the gateway; edit handler.py and reload the page
protoreg fetch -e . -i {scheme}://example/
protoreg pack . -o {slug}.protoreg      # the bundle file a store publishes
```
"""


def scaffold(directory: str | Path, scheme: str, template: str = "basic", *, ext_id: str | None = None,
             name: str | None = None) -> list[Path]:
    """Write the extension into ``directory`` (which must be missing or empty); returns the files written."""
    if not _SCHEME.fullmatch(scheme):
        raise ScaffoldError(f"{scheme!r} is not a scheme protoreg new can scaffold: use web+ or ext+ followed by "
                            "lowercase letters, e.g. --scheme web+notes")
    if template not in TEMPLATES:
        raise ScaffoldError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}")
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} already exists and is not an empty directory. Choose a new directory")
    word = scheme.split("+", 1)[1]
    slug = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-") or word
    title = name or f"{word.capitalize()} scheme"
    manifest: dict[str, object] = {
        "manifest_version": 3, "name": title, "version": "0.1.0",
        "browser_specific_settings": {"gecko": {"id": ext_id or f"{slug}@example.org"}},
        "protocol_handlers": [{"protocol": scheme, "name": f"{title} ({template})",
                               "uriHandlerScript": "handler.py", "uriIcon": "icon.svg",
                               "uriIsTrustworthy": template != "streaming"}],
        "permissions": [], "host_permissions": [],
    }
    if template == "sandboxed":
        manifest["content_security_policy"] = {"protocol_pages": _STRICT_CSP}
    handler = {"basic": _BASIC, "streaming": _STREAMING, "sandboxed": _SANDBOXED}[template]
    body = _TEST_BODIES[template].format(scheme=scheme)
    files = {
        "manifest.json": json.dumps(manifest, indent=2) + "\n",
        "handler.py": handler.format(scheme=scheme),
        "icon.svg": _ICON.format(letter=word[0].upper()),
        "tests/test_extension.py": _TEST.format(name=word, body=body),
        "README.md": _README.format(title=title, scheme=scheme, template=template, slug=slug, grants_note=(
            ", no grants and a strict CSP" if template == "sandboxed" else ", and no grants yet")),
    }
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
