"""Fuzz targets: the gateway's Host parsing, and whole raw HTTP requests (request line, Host, headers, body) sent
byte for byte. A request may be refused (4xx) but never answered with a 5xx, never hang, and never leave a worker
stream behind."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protoreg
from protoreg.gateway import create_app
from protoreg.gateway.hosts import decode_host_label, encode_host_label, parse_host_header, site_label
from protoreg.testing import write_extension

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
LABELISH = "abcdefghijklmnopqrstuvwxyz0123456789-.:[]_~%"


@FUZZ
@given(st.one_of(st.text(max_size=120), st.text(alphabet=LABELISH, max_size=120)))
def test_host_headers_parse_to_a_target_or_none_and_targets_are_canonical(value):
    target = parse_host_header(value)
    if target is not None and target.host is not None:
        assert encode_host_label(target.host) == value.strip().lower().split(".")[0]
        assert decode_host_label(encode_host_label(target.host)) == target.host


SCRIPT = """
from protoreg import Response
async def handleRequest(request):
    body = await request.read()
    return Response(f"{request.method} {request.url} {len(body)}", headers={"X-Seen": str(len(request.headers))})
"""
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~", min_size=1,
                max_size=12)
BYTES = st.binary(max_size=40)
METHOD = st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE"]),
                   TOKEN.map(str.encode), BYTES)
PATH = st.one_of(st.sampled_from([b"/", b"/a/b?c=d", b"/%2e%2e/", b"/web+x/h/p", b"/?uri=web%2Bx%3A%2F%2Fh%2F",
                                  b"/_protoreg/status.json", b"/_protoreg/icon/x@test/web+x"]),
                 st.binary(min_size=1, max_size=60).map(lambda b: b"/" + b.replace(b" ", b"").replace(b"\r", b"")
                                                        .replace(b"\n", b"")))
HEADERS = st.lists(st.tuples(st.one_of(st.sampled_from([b"Expect", b"Origin", b"Range", b"Authorization", b"Accept",
                                                         b"Transfer-Encoding", b"Cache-Control"]),
                                        TOKEN.map(str.encode), BYTES),
                              st.one_of(BYTES, st.sampled_from([b"100-continue", b"bytes=0-3", b"chunked", b"null",
                                                                b"http://a.web-x.localhost"]))),
                   max_size=5)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    loop = asyncio.new_event_loop()
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path_factory.mktemp("fz") / "x", scheme="web+x", script=SCRIPT, ext_id="x@test"))
    session = protoreg.Session(reg, protoreg.WorkerConfig(request_timeout=10))
    runner = web.AppRunner(create_app(reg, session=session))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield loop, port, session
    loop.run_until_complete(runner.cleanup())
    loop.run_until_complete(session.close())
    loop.close()


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()


def test_raw_gateway_requests_are_never_a_5xx_and_leak_nothing(gateway):
    loop, port, session = gateway
    full = f"h.web-x.{site_label('x@test', 'web+x', 'h')}.localhost:{port}".encode()
    hosts = st.one_of(st.sampled_from([full, f"localhost:{port}".encode(), b"h.web-x.localhost", b"a.b.c.localhost",
                                       full + b":99999", b""]), BYTES)

    @FUZZ
    @given(METHOD, PATH, hosts, HEADERS, st.binary(max_size=100))
    def one(method, path, host, headers, body):
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + host,
                 *[n + b": " + v.replace(b"\r", b"").replace(b"\n", b"") for n, v in headers],
                 b"Content-Length: " + str(len(body)).encode(), b"Connection: close", b"", b""]
        status_line = loop.run_until_complete(_send(port, b"\r\n".join(lines) + body))
        if status_line.startswith(b"HTTP/1.1 "):
            status = int(status_line.split()[1])
            assert status < 500, (status, method, path, host, headers)

    one()
    loop.run_until_complete(asyncio.sleep(0.2))
    assert sum(w.in_flight for w in session.workers.workers()) == 0
