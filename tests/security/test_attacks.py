"""The hostile-handler suite: real attacks from a real sandboxed worker. Each asserts that the attack failed,
that the other extension kept being served, and (where the worker can see it coming) that the host log explains
the denial."""

from __future__ import annotations

import asyncio
import errno
import os
import socket

import psutil
import pytest

from tests.security.conftest import attack, needs, victim_still_serves

EACCES, EPERM, ENOENT, EROFS = errno.EACCES, errno.EPERM, errno.ENOENT, errno.EROFS


def logged(caplog, needle: str) -> bool:
    return any(needle in r.getMessage() and "evil@test" in r.getMessage() for r in caplog.records)


@needs("landlock")
@pytest.mark.parametrize(("name", "query", "explains"), [
    ("passwd", {}, "tried to read /etc/passwd"),
    ("home", {}, "outside its extension bundle"),
    ("environ", {}, "/environ"),
])
async def test_reading_outside_the_bundle_is_denied_and_explained(arena, name, query, explains):
    session, _, caplog = arena
    out = await attack(session, name, **query)
    assert out["result"] in (ENOENT, EACCES), out  # not in the worker's filesystem at all, or Landlock
    await victim_still_serves(session)
    await asyncio.sleep(0.1)
    assert logged(caplog, explains)


@needs("landlock")
async def test_another_extensions_bundle_is_unreadable(arena):
    session, victim, _ = arena
    out = await attack(session, "file", path=str(victim.root / "handler.py"))
    assert out["result"] in (ENOENT, EACCES)


@needs("landlock")
async def test_writing_outside_the_data_dir_is_denied(arena, tmp_path):
    session, _, caplog = arena
    target = tmp_path / "pwned.txt"
    out = await attack(session, "write", path=str(target))
    assert out["result"] in (EROFS, EACCES) and not target.exists()
    await asyncio.sleep(0.1)
    assert logged(caplog, "tried to write")


@needs("seccomp")
async def test_tcp_connect_to_a_live_loopback_server_fails_and_the_server_sees_nothing(arena):
    session, _, caplog = arena
    connections = []
    server = await asyncio.start_server(lambda r, w: connections.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        out = await attack(session, "tcp", port=str(port))
        raw = await attack(session, "raw_connect", port=str(port))
    finally:
        server.close()
        await server.wait_closed()
    assert out["result"] == EPERM and raw["result"] == EPERM
    assert connections == []
    await victim_still_serves(session)


@needs("seccomp")
@pytest.mark.parametrize("name", ["bind", "udp"])
async def test_binding_and_udp_are_denied(arena, name):
    session, _, _ = arena
    out = await attack(session, name, port="9")
    assert out["result"] == EPERM


@needs("landlock")
async def test_abstract_unix_socket_outside_the_sandbox_is_unreachable(arena):
    session, _, _ = arena
    name = f"protoreg-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen()
    listener.setblocking(False)
    try:
        out = await attack(session, "abstract", name=name)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    # The worker's own network namespace has its own abstract socket names (ECONNREFUSED); without the
    # namespace, Landlock's abstract-socket scope refuses it (EPERM).
    assert out["result"] in (EPERM, errno.ECONNREFUSED)


@needs("seccomp")
@pytest.mark.parametrize(("name", "explains"), [("fork", "tried os.fork"), ("exec", "tried os.exec")])
async def test_starting_processes_is_denied(arena, name, explains):
    session, _, caplog = arena
    out = await attack(session, name)
    assert out["result"] == EPERM
    await asyncio.sleep(0.1)
    assert logged(caplog, explains)
    await victim_still_serves(session)


async def test_memory_bomb_hits_the_address_space_limit(arena):
    session, _, _ = arena
    out = await attack(session, "memory")
    assert out["result"] == "MemoryError"
    await victim_still_serves(session)


async def test_fd_exhaustion_stops_at_the_limit_and_the_worker_recovers(arena):
    session, _, _ = arena
    out = await attack(session, "fds")
    assert out["result"] == errno.EMFILE
    assert (await attack(session, "passwd"))["result"] in (ENOENT, EACCES, "allowed")  # the worker still answers


@needs("landlock")
async def test_signalling_or_tracing_the_parent_or_another_worker_is_denied(arena):
    session, _, _ = arena
    await victim_still_serves(session)
    victim_pid = next(w.pid for w in session.workers.workers() if w.label == "victim@test")
    for target in (os.getpid(), victim_pid):
        assert (await attack(session, "kill", pid=str(target)))["result"] == EPERM
        assert (await attack(session, "ptrace", pid=str(target)))["result"] == EPERM
    assert psutil.pid_exists(victim_pid)
    await victim_still_serves(session)


async def test_busy_loop_is_stopped_by_the_cpu_limit_and_the_host_keeps_serving(arena):
    session, _, _ = arena
    task = asyncio.ensure_future(session.fetch("web+evil://x/busy"))
    await asyncio.sleep(0.2)
    await victim_still_serves(session)
    resp = await asyncio.wait_for(task, 15)
    assert (resp.status == 502 and "SIGXCPU" in str(resp.error)) or "SIGKILL" in str(resp.error)


async def test_stdout_flood_neither_blocks_the_host_nor_fills_its_memory(arena):
    session, _, caplog = arena
    before = psutil.Process().memory_info().rss
    resp = await session.fetch("web+evil://x/flood")
    assert await resp.text() == "flooded"
    await victim_still_serves(session)
    assert psutil.Process().memory_info().rss - before < 64 * 1024 * 1024
    await asyncio.sleep(1.1)
    assert sum("flood" in r.getMessage() for r in caplog.records) < 2000


async def test_crlf_header_injection_is_refused_with_a_502(arena):
    session, _, _ = arena
    resp = await session.fetch("web+evil://x/crlf")
    assert resp.status == 502 and "Set-Cookie" not in resp.headers
    assert "CR, LF or NUL" in await resp.text()


async def test_the_parent_sees_no_new_privs_and_seccomp_on_a_live_worker(arena):
    session, _, _ = arena
    await victim_still_serves(session)
    (worker,) = [w for w in session.workers.workers() if w.label == "victim@test"]
    status = open(f"/proc/{worker.pid}/status").read()
    assert "NoNewPrivs:\t1" in status
    from tests.security.conftest import OFFERED

    if OFFERED["seccomp"].active:
        assert "Seccomp:\t2" in status
    layers = {layer["name"]: layer["active"] for layer in worker.hello["sandbox"]["layers"]}
    for name, offered in OFFERED.items():
        if offered.active:
            assert layers[name], f"{name} is offered by the kernel but did not engage in the worker"
