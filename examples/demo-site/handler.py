"""Serve the bundled pages of a small static site: every host of web+demo gets its own copy (and origin)."""

import mimetypes
from pathlib import PurePosixPath

from site_pages import PAGES

from protoreg import Request, Response

TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css", ".svg": "image/svg+xml"}


async def handleRequest(request: Request) -> Response:
    path = request.url.path
    if path.endswith("/"):
        path += "index.html"
    page = PAGES.get(path.lstrip("/"))
    if page is None:
        return Response.error(404, f"{path} is not part of the demo site")
    suffix = PurePosixPath(path).suffix
    ctype = TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    body = page.replace("{host}", request.url.host or "") if suffix == ".html" else page
    return Response(body, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
