"""The ipfs:// handler: content-addressed files from the extension's verified local block store.

Written as any third-party extension would be: the helper modules live in this bundle (ipfs_core/), and the block
store lives in the extension's data directory (the "storage" permission)."""

from ipfs_core import IpfsError
from ipfs_core.blocks import BlockStore
from ipfs_core.gateway import error_page, respond, wants_html

from protoreg import Request, Response, runtime

_store = None


def store() -> BlockStore:
    global _store
    if _store is None:
        _store = BlockStore(runtime.data_dir() / "blocks")
    return _store


async def handleRequest(request: Request) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if request.method not in ("GET", "HEAD"):
        message = "ipfs:// is read-only: use GET or HEAD"
        if wants_html(headers):
            page = error_page(405, message, str(request.url))
            return Response(page.body, status=405, headers=[*page.headers, ("Allow", "GET, HEAD")])
        return Response.error(405, message, headers={"Allow": "GET, HEAD"})
    res = respond(store(), request.method, request.url.raw_host or "", request.url.raw_path,
                  dict(request.url.query), headers)
    body = res.body
    if not isinstance(body, bytes):
        chunks = body

        async def stream():
            # A missing or corrupt block mid-file raises here: the stream aborts, it never sends wrong bytes.
            for chunk in chunks:
                yield chunk

        body = stream()
    return Response(body, status=res.status, headers=res.headers)


__all__ = ["IpfsError", "handleRequest"]
