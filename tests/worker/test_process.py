"""Worker processes: dispatch, streaming with backpressure, faults, crashes, idle stop, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import os

import psutil
import pytest

from protoreg.errors import HandlerError, WorkerCrashed
from tests.worker.conftest import head

ECHO = """
    from protoreg import Response
    import helper

    async def handleRequest(request):
        body = await request.read()
        return Response(helper.describe(request, body), headers={"x-method": request.method})
"""
HELPER = """
    def describe(request, body):
        return f"{request.method} {request.url} {request.headers.get('x-test')} {body.decode()}"
"""


async def collect(stream) -> bytes:
    return b"".join([chunk async for chunk in stream.body])


async def test_request_is_echoed_through_a_real_worker_process(manager, make_bundle):
    m = await manager()
    ext = make_bundle(ECHO, files={"helper.py": HELPER})
    st = await m.dispatch(ext, head("web+t://host/a?q=1", "POST", [("X-Test", "yes")]), b"payload")
    status, headers = await st.head
    assert status == 200
    assert ("x-method", "POST") in headers
    assert await collect(st) == b"POST web+t://host/a?q=1 yes payload"
    (worker,) = m.workers()
    assert worker.pid != os.getpid()
    assert psutil.Process(worker.pid).parent().pid == os.getpid()


async def test_two_hundred_concurrent_requests_share_one_worker(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        import asyncio
        from protoreg import Response
        async def handleRequest(request):
            await asyncio.sleep(0.05)   # all 200 are in flight at once
            return Response(request.url.path)
    """)

    async def one(i: int) -> bytes:
        st = await m.dispatch(ext, head(f"web+t://h/{i}"), None)
        await st.head
        return await collect(st)

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results == [f"/{i}".encode() for i in range(200)]
    (worker,) = m.workers()
    assert worker.requests_served == 200


async def test_handler_exception_is_a_500_naming_the_script_and_line(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        async def handleRequest(request):
            raise KeyError("missing-thing")
    """)
    st = await m.dispatch(ext, head("web+t://h/"), None)
    with pytest.raises(HandlerError) as info:
        await st.head
    assert info.value.status == 500
    assert "handler.py" in str(info.value) and "KeyError" in str(info.value) and ":3" in str(info.value)


@pytest.mark.parametrize(("ret", "needle"), [
    ("'a string'", "returned str, not a protoreg.Response"),
    ("Response('x', status=99)", "outside 200..599"),
    ("Response('x', status='200')", "status must be an int"),
    ("Response('x', headers={'x-bad': 'a\\r\\nSet-Cookie: evil=1'})", "CR, LF or NUL"),
    ("Response('x', headers={'bad name': 'v'})", "not an HTTP token"),
    ("Response(12345)", "body must be bytes"),
])
async def test_bad_return_values_are_a_502_explaining_the_fault(manager, make_bundle, ret, needle):
    m = await manager()
    ext = make_bundle(f"""
        from protoreg import Response
        async def handleRequest(request):
            return {ret}
    """)
    st = await m.dispatch(ext, head("web+t://h/"), None)
    with pytest.raises(HandlerError) as info:
        await st.head
    assert info.value.status == 502
    assert needle in str(info.value) and "handler.py" in str(info.value)


async def test_script_that_fails_to_load_reports_per_request_without_crash_loop(manager, make_bundle):
    m = await manager()
    ext = make_bundle("def oops(:\n")
    for _ in range(2):
        st = await m.dispatch(ext, head("web+t://h/"), None)
        with pytest.raises(HandlerError, match=r"handler script handler.py failed to load: SyntaxError"):
            await st.head
    assert m.stats()[0]["starts"] == 1


async def test_non_async_handler_is_reported(manager, make_bundle):
    m = await manager()
    st = await m.dispatch(make_bundle("def handleRequest(request):\n    return None\n"), head("web+t://h/"), None)
    with pytest.raises(HandlerError, match="must be `async def`"):
        await st.head


async def test_worker_death_mid_stream_fails_the_stream_and_next_request_gets_a_fresh_worker(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        import os
        from protoreg import Response
        async def handleRequest(request):
            if request.url.path == "/die":
                async def body():
                    yield b"first chunk"
                    os._exit(7)
                return Response(body())
            return Response(str(os.getpid()))
    """)
    st = await m.dispatch(ext, head("web+t://h/die"), None)
    status, _ = await st.head
    assert status == 200
    with pytest.raises(WorkerCrashed, match=r"exited with code 7 while handling 1 request"):
        await collect(st)
    dead_pid = st.worker.pid
    st2 = await m.dispatch(ext, head("web+t://h/pid"), None)
    await st2.head
    assert int(await collect(st2)) != dead_pid
    assert not psutil.pid_exists(dead_pid) or psutil.Process(dead_pid).status() == psutil.STATUS_ZOMBIE


async def test_worker_killed_before_answering_fails_in_flight_requests(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        import asyncio
        async def handleRequest(request):
            await asyncio.sleep(60)
    """)
    streams = [await m.dispatch(ext, head(f"web+t://h/{i}"), None) for i in range(5)]
    await asyncio.sleep(0.2)
    streams[0].worker.proc.kill()
    for st in streams:
        with pytest.raises(WorkerCrashed, match="SIGKILL"):
            await asyncio.wait_for(st.head, 5)


async def test_abort_cancels_the_handler_and_closes_its_body_stream(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        import asyncio
        from protoreg import Response
        state = {"closed": 0, "cancelled": 0}
        async def handleRequest(request):
            if request.url.path == "/state":
                return Response.json(state)
            if request.url.path == "/slow":
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    state["cancelled"] += 1
                    raise
            async def forever():
                try:
                    while True:
                        yield b"x" * 65536
                finally:
                    state["closed"] += 1
            return Response(forever())
    """)
    st = await m.dispatch(ext, head("web+t://h/stream"), None)
    await st.head
    assert len(await st.body.__anext__()) > 0
    st.abort()
    slow = await m.dispatch(ext, head("web+t://h/slow"), None)
    await asyncio.sleep(0.2)
    slow.abort()
    await asyncio.sleep(0.2)
    check = await m.dispatch(ext, head("web+t://h/state"), None)
    await check.head
    assert await collect(check) == b'{"closed": 1, "cancelled": 1}'


async def test_idle_worker_stops_and_restarts_lazily(manager, make_bundle):
    m = await manager(idle_timeout=0.3)
    ext = make_bundle("""
        import os
        from protoreg import Response
        async def handleRequest(request):
            return Response(str(os.getpid()))
    """)
    st = await m.dispatch(ext, head("web+t://h/"), None)
    await st.head
    first = int(await collect(st))
    for _ in range(50):
        await asyncio.sleep(0.1)
        if not m.workers():
            break
    assert m.workers() == []
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    st = await m.dispatch(ext, head("web+t://h/"), None)
    await st.head
    assert int(await collect(st)) != first


async def test_output_flood_is_rate_limited_and_does_not_block(manager, make_bundle, caplog):
    caplog.set_level(logging.INFO, logger="protoreg.worker")
    m = await manager(log_lines_per_second=50)
    ext = make_bundle("""
        import sys
        from protoreg import Response
        async def handleRequest(request):
            for i in range(100000):
                print("flood line", i)
            sys.stderr.write("to stderr\\n")
            return Response("done")
    """)
    st = await asyncio.wait_for(m.dispatch(ext, head("web+t://h/"), None), 10)
    await asyncio.wait_for(st.head, 20)
    assert await collect(st) == b"done"
    await asyncio.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if "test@example.org" in r.getMessage()]
    assert any("flood line 0" in line for line in lines)
    assert len([line for line in lines if "flood line" in line]) < 1000
    await m.close()
    assert any("suppressed (flood)" in r.getMessage() for r in caplog.records)


async def test_close_leaves_no_child_processes_or_descriptors(manager, make_bundle):
    me = psutil.Process()
    fds_before = me.num_fds()
    m = await manager()
    ext = make_bundle("""
        from protoreg import Response
        async def handleRequest(request):
            return Response("ok")
    """)
    for i in range(3):
        st = await m.dispatch(ext, head(f"web+t://h/{i}"), None)
        await st.head
        await collect(st)
    assert me.children()
    await m.close()
    await asyncio.sleep(0.05)
    assert [c for c in me.children() if c.status() != psutil.STATUS_ZOMBIE] == []
    assert me.num_fds() <= fds_before


async def test_garbage_frames_from_a_worker_get_it_killed_and_the_host_keeps_serving(manager, make_bundle):
    m = await manager()
    ext = make_bundle("""
        import os, socket
        from protoreg import Response
        async def handleRequest(request):
            if request.url.path == "/attack":
                for fd in range(3, 64):
                    try:
                        s = socket.socket(fileno=os.dup(fd))
                    except OSError:
                        continue
                    if s.family == socket.AF_UNIX:
                        s.send(b"\\xff" * 10 + b"garbage")
                    s.detach()
                return Response("sent")
            return Response(str(os.getpid()))
    """)
    st = await m.dispatch(ext, head("web+t://h/attack"), None)
    with pytest.raises(WorkerCrashed, match="broke the IPC protocol"):
        await asyncio.wait_for(st.head, 10)
    st = await m.dispatch(ext, head("web+t://h/ok"), None)
    await st.head
    assert int(await collect(st)) > 0
