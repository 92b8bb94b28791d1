"""Bad input at the runtime's edges gets a clear, typed error promptly and leaves no stream, task or worker
behind: undecodable or control-character headers (caller's or handler's), bodies that break off, Expect."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import protoreg
from protoreg.gateway import create_app
from protoreg.gateway.hosts import site_label
from protoreg.testing import write_extension

SCRIPT = """
import asyncio
from protoreg import Response

async def handleRequest(request):
    path = request.url.path
    if path == "/ctl":
        return Response("x", headers={"X-Ctl": "a\\x01b"})
    if path == "/ctl-stream":
        async def gen():
            yield b"x" * 300_000
        return Response(gen(), headers={"X-Ctl": "a\\x1bb"})
    if path == "/surrogate-header":
        return Response("x", headers={"X-S": "\\udcff"})
    if path == "/surrogate-body":
        return Response("caf\\udce9")
    if path == "/upload":
        data = await request.read()
        return Response(str(len(data)))
    if path == "/slow":
        await asyncio.sleep(5)
        return Response("late")
    return Response("ok")
"""


@pytest.fixture
async def setup(tmp_path):
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "x", scheme="web+x", script=SCRIPT, ext_id="x@test"))
    async with protoreg.Session(reg, protoreg.WorkerConfig(request_timeout=20)) as session:
        yield reg, session


def in_flight(session) -> int:
    return sum(w.in_flight for w in session.workers.workers())


async def settled(session, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while in_flight(session) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert in_flight(session) == 0, "a worker stream was left behind"


@pytest.mark.parametrize("headers", [{"x-a": "\udcff"}, {"x-a": "a\rb"}, {"x a": "1"}, {"x-a": "\x07"}])
async def test_a_header_the_caller_can_not_send_is_an_invalid_request_and_leaks_nothing(setup, headers):
    _, session = setup
    assert (await session.fetch("web+x://h/")).status == 200
    with pytest.raises(protoreg.InvalidRequest, match="header"):
        await session.fetch("web+x://h/", headers=headers)
    await settled(session)
    assert (await session.fetch("web+x://h/")).status == 200


@pytest.mark.parametrize("path", ["/ctl", "/ctl-stream", "/surrogate-header", "/surrogate-body"])
async def test_a_response_the_handler_can_not_send_is_a_prompt_502_naming_the_script(setup, path):
    _, session = setup
    t = time.monotonic()
    resp = await session.fetch(f"web+x://h{path}")
    assert resp.status == 502 and "handler.py" in str(resp.error), str(resp.error)
    assert time.monotonic() - t < 5
    await settled(session)


async def test_a_streamed_request_body_that_raises_fails_the_fetch_promptly_with_its_own_error(setup):
    _, session = setup

    class Broken(Exception):
        pass

    async def body():
        yield b"first chunk"
        await asyncio.sleep(0.05)
        raise Broken("the source broke")

    t = time.monotonic()
    with pytest.raises(Broken):
        await session.fetch("web+x://h/upload", method="POST", body=body())
    assert time.monotonic() - t < 5
    await settled(session)


async def test_session_close_cancels_liveness_watchdogs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="protoreg.worker")
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "x", scheme="web+x", script=SCRIPT, ext_id="x@test"))
    session = protoreg.Session(reg, protoreg.WorkerConfig(request_timeout=0.2, liveness_timeout=5))
    await session.start()
    assert (await session.fetch("web+x://h/slow")).status == 504
    assert session._watchdogs
    await session.close()
    assert not session._watchdogs
    await asyncio.sleep(0.1)
    assert not any("was killed" in r.getMessage() for r in caplog.records)


@pytest.fixture
async def gateway(setup, aiohttp_client):
    reg, session = setup
    client = await aiohttp_client(create_app(reg, session=session))
    site = site_label("x@test", "web+x", "h")
    return client, session, f"h.web-x.{site}.localhost:8080"


async def raw(client, request: bytes, *, close_after: bool = False) -> int | None:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    if close_after:
        writer.close()
        return None
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(line.split()[1])


async def test_a_non_utf8_request_header_at_the_gateway_is_a_400_and_leaks_no_stream(gateway):
    client, session, host = gateway
    status = await raw(client, f"GET / HTTP/1.1\r\nHost: {host}\r\nX-A: caf\xe9\r\nConnection: close\r\n\r\n"
                       .encode("latin-1"))
    assert status == 400
    await settled(session)


@pytest.mark.parametrize(("expect", "status"), [(b"caf\xe9", 417), (b"200-ok", 417)])
async def test_an_expect_header_the_gateway_can_not_honour_is_a_417(gateway, expect, status):
    client, _, host = gateway
    assert await raw(client, f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nExpect: ".encode()
                     + expect + b"\r\nConnection: close\r\n\r\nhi") == status


async def test_expect_100_continue_still_works(gateway):
    client, _, host = gateway
    resp = await client.post("/upload", data=b"hello", headers={"Host": host, "Expect": "100-continue"})
    assert resp.status == 200 and await resp.text() == "5"


async def test_a_client_that_drops_its_upload_frees_the_worker_stream_at_once(gateway):
    client, session, host = gateway
    await raw(client, f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode()
              + b"x" * 1000, close_after=True)
    await asyncio.sleep(0.3)
    await settled(session, within=5)


@pytest.mark.parametrize("port", ["65536", "99999", "123456789012"])
async def test_a_host_port_outside_the_tcp_range_is_a_400(gateway, port):
    client, _, host = gateway
    assert await raw(client, f"GET / HTTP/1.1\r\nHost: {host.split(':')[0]}:{port}\r\nConnection: close\r\n\r\n"
                     .encode()) == 400
