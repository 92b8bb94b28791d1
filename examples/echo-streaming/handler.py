"""Stream the request body back without ever holding it whole, and count what went through."""

from protoreg import Request, Response


async def handleRequest(request: Request) -> Response:
    if request.method in ("GET", "HEAD"):
        return Response("POST a body to web+echo://any/ and it comes back, streamed.\n")

    async def echo():
        total = 0
        async for chunk in request.stream():  # arrives with backpressure from the caller
            total += len(chunk)
            yield chunk                         # leaves with backpressure to the caller
        yield f"\n-- {total} bytes echoed --\n".encode()

    return Response(echo(), headers={"Content-Type": "application/octet-stream"})
