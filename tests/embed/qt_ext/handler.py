"""The QtWebEngine tests' site: every host serves the same paths (each host is its own origin)."""

import asyncio
import re

from protoreg import Request, Response

BIG = 64 << 20
CHUNK = 1 << 16
MEDIA = bytes(range(256)) * 4  # 1024 bytes, byte i == i % 256


def _block(i):
    return bytes([i % 251]) * CHUNK


async def handleRequest(request: Request) -> Response:
    path = request.url.path
    if path == "/":
        return Response(f"<!doctype html><title>{request.url.host}</title><h1>{request.url.host}</h1>"
                        "<a href='/next'>next</a>", headers={"Content-Type": "text/html"})
    if path == "/next":
        return Response("<!doctype html><title>next</title><h1>next page</h1>", headers={"Content-Type": "text/html"})
    if path == "/pixel.svg":
        return Response('<svg xmlns="http://www.w3.org/2000/svg" width="7" height="5"/>',
                        headers={"Content-Type": "image/svg+xml"})
    if path == "/none":
        return Response("private to " + request.url.host, headers={"Content-Type": "text/plain"})
    if path == "/cors":
        return Response("shared by " + request.url.host, headers={"Content-Type": "text/plain",
                                                                   "Access-Control-Allow-Origin": "*"})
    if path == "/big":
        async def body():
            for i in range(BIG // CHUNK):
                yield _block(i)
        return Response(body(), headers={"Content-Type": "application/octet-stream", "Content-Length": str(BIG)})
    if path in ("/media", "/whole"):
        found = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", ""))
        if path == "/whole" or found is None:
            return Response(MEDIA, headers={"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                                            "Content-Length": str(len(MEDIA))})
        first, last = found.groups()
        if first:
            start, end = int(first), min(int(last) if last else len(MEDIA) - 1, len(MEDIA) - 1)
        else:
            start, end = max(len(MEDIA) - int(last), 0), len(MEDIA) - 1
        return Response(MEDIA[start:end + 1], status=206, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"bytes {start}-{end}/{len(MEDIA)}",
            "Content-Length": str(end - start + 1)})
    if path == "/boom":
        raise RuntimeError("the qtest handler exploded on purpose")
    if path == "/headers":
        return Response("{}", headers={"Content-Type": "application/json",
                                       "Content-Security-Policy": "img-src 'self'",
                                       "Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                       "Origin-Agent-Cluster": "?0"})
    if path == "/slow":
        async def body():
            yield b"first chunk\n"
            while True:
                await asyncio.sleep(0.05)
                yield b"."
        return Response(body(), headers={"Content-Type": "text/plain"})
    if path == "/echo":
        data = await request.read()
        return Response(b"echo:" + data, headers={"Content-Type": "text/plain"})
    if path == "/redir":
        return Response.redirect("/next", status=302)
    if path == "/hang":
        await asyncio.sleep(3600)
    if path == "/missing-page":
        return Response("<h1>nothing here</h1>", status=404, headers={"Content-Type": "text/html"})
    return Response.error(404, f"no {path} here")
