from protoreg import Request, Response


async def handleRequest(request: Request) -> Response:
    if request.url.path == "/":
        who = request.url.host
        html = f"<!doctype html><title>Hello</title><h1>Hello from web+hello://{who}/</h1>"
        return Response(html, headers={"content-type": "text/html; charset=utf-8"})
    return Response.error(404, f"nothing at {request.url.path}")
