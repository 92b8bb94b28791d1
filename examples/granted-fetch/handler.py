"""web+proxy://x/?url=... fetches the URL through the broker. host_permissions grants only 127.0.0.1, so any
other host is refused with a PermissionDenied that says what to add to manifest.json.

127.0.0.1 is a loopback address, which the broker also refuses by default (server-side request forgery), whatever
host_permissions say. Run it with the host's permission to reach private networks:

    python3 -m http.server 8000 --bind 127.0.0.1 &
    protoreg fetch --allow-private-networks -e examples/granted-fetch "web+proxy://x/?url=http://127.0.0.1:8000/"
    protoreg serve --allow-private-networks     # then open http://x.web-proxy.localhost:8080/?url=...

(from Python: ``Session(reg, allow_private_networks=True)``). Without the flag, the answer is a 403 saying so."""

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
