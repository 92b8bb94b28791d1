"""web+proxy://x/?url=... fetches the URL through the broker. host_permissions grants only 127.0.0.1, so any
other host is refused with a PermissionDenied that says what to add to manifest.json."""

from protoreg import Request, Response, runtime
from protoreg.errors import PermissionDenied


async def handleRequest(request: Request) -> Response:
    target = request.url.query.get("url")
    if not target:
        return Response("pass ?url=http://127.0.0.1:PORT/... (granted) or any other URL (refused)\n")
    try:
        upstream = await runtime.fetch(target)
    except PermissionDenied as denied:
        return Response(f"{denied}\n", status=403)
    visits = int(await runtime.storage.get("visits") or b"0") + 1
    await runtime.storage.set("visits", str(visits))
    return Response(upstream.body, status=upstream.status, headers={
        "Content-Type": upstream.headers.get("Content-Type", "application/octet-stream"),
        "X-Visits-From-This-Origin": str(visits)})
