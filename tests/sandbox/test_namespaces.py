"""The user + network namespace alone: no network at all, the inherited IPC socketpair still works, and the
process keeps its uid/gid view."""

from __future__ import annotations

import errno
import os
import socket

from tests.sandbox.conftest import needs

ONLY = ("namespaces",)


@needs("namespaces")
def test_the_namespace_alone_leaves_no_route_to_a_live_tcp_listener(sandbox, tcp_listener):
    out = sandbox.run(f"""
        attempt("connect", lambda: socket.create_connection({tuple(tcp_listener.address)!r}, timeout=2))
        out["interfaces"] = [name for _, name in socket.if_nameindex()]
    """, layers=ONLY, expect=ONLY)
    assert out["connect"] == errno.ENETUNREACH
    assert out["interfaces"] == ["lo"]
    assert not tcp_listener.touched()


@needs("namespaces")
def test_the_namespace_alone_stops_udp_and_host_abstract_sockets(sandbox, udp_listener, abstract_listener):
    out = sandbox.run(f"""
        attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", {udp_listener.address!r}))
        attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect({abstract_listener.address!r}))
    """, layers=ONLY, expect=ONLY)
    assert out["udp"] == errno.ENETUNREACH and out["abstract"] == errno.ECONNREFUSED
    assert not udp_listener.touched() and not abstract_listener.touched()


@needs("namespaces")
def test_the_inherited_ipc_socketpair_still_works_and_the_uid_view_is_kept(sandbox):
    parent, child = socket.socketpair()
    os.set_inheritable(child.fileno(), True)
    try:
        out = sandbox.run(f"""
            ipc = socket.socket(fileno={child.fileno()})
            ipc.sendall(b"hello from the sandbox")
            out["uid"], out["gid"] = os.getuid(), os.getgid()
            out["uid_map"] = open("/proc/self/uid_map").read().split()
        """, layers=ONLY, expect=ONLY, pass_fds=(child.fileno(),), keep_fds=[child.fileno()])
        parent.settimeout(5)
        assert parent.recv(100) == b"hello from the sandbox"
    finally:
        parent.close()
        child.close()
    assert (out["uid"], out["gid"]) == (os.getuid(), os.getgid())
    assert out["uid_map"] == [str(os.getuid()), str(os.getuid()), "1"]


@needs("namespaces")
def test_a_socket_created_before_the_namespace_still_reaches_the_host_which_is_why_fds_and_landlock_matter(
        sandbox, tcp_listener):
    out = sandbox.run(f"""
        attempt("connect", lambda: smuggled.connect({tuple(tcp_listener.address)!r}))
    """, before="""
        smuggled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ARGS["policy"]["keep_fds"] = [smuggled.fileno()]
    """, layers=ONLY, expect=ONLY)
    assert out["connect"] == "allowed" and tcp_listener.touched()
