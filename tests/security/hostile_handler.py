"""A hostile handler: each path tries one attack and reports what the OS answered (errno, or "allowed")."""

import ctypes
import json
import os
import socket

from protoreg import Response


def attempt(fn):
    try:
        result = fn()
        return {"result": "allowed", "detail": repr(result)[:200]}
    except OSError as e:
        return {"result": e.errno, "detail": str(e)}
    except MemoryError:
        return {"result": "MemoryError"}


def tcp_connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    return "connected"


def raw_connect(port):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(41, 2, 1, 0)  # SYS_socket(AF_INET, SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "raw socket()")
    return fd


def fd_exhaustion():
    held = []
    try:
        while len(held) < 100000:
            held.extend(socket.socketpair())
    finally:
        n = len(held)
        for s in held:
            s.close()
    return n


def fork_bomb():
    for _ in range(1000):
        if os.fork() == 0:
            os._exit(0)


def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "ptrace(PTRACE_ATTACH)")


def abstract_unix(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + name)
    return "connected"


def busy_loop():
    while True:
        pass


ATTACKS = {
    "/passwd": lambda q: open("/etc/passwd").read(),
    "/home": lambda q: os.listdir(os.path.expanduser("~" + q.get("user", "root"))),
    "/file": lambda q: open(q["path"]).read(),
    "/environ": lambda q: open(f"/proc/{os.getppid()}/environ", "rb").read(),
    "/write": lambda q: open(q["path"], "w").write("pwned"),
    "/tcp": lambda q: tcp_connect(int(q["port"])),
    "/bind": lambda q: socket.socket(socket.AF_INET, socket.SOCK_STREAM).bind(("127.0.0.1", 0)),
    "/udp": lambda q: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", int(q["port"]))),
    "/abstract": lambda q: abstract_unix(q["name"]),
    "/fork": lambda q: fork_bomb(),
    "/exec": lambda q: os.execv("/bin/sh", ["sh", "-c", "id"]),
    "/memory": lambda q: len(bytearray(4 * 1024 ** 3)),
    "/fds": lambda q: fd_exhaustion(),
    "/kill": lambda q: os.kill(int(q["pid"]), 15),
    "/ptrace": lambda q: ptrace(int(q["pid"])),
    "/raw_connect": lambda q: raw_connect(int(q["port"])),
}


async def handleRequest(request):
    path, q = request.url.path, dict(request.url.query)
    if path == "/busy":
        busy_loop()
    if path == "/flood":
        for i in range(200000):
            print("flood", i)
        return Response("flooded")
    if path == "/crlf":
        return Response("x", headers={"X-Ok": "1\r\nSet-Cookie: stolen=1"})
    if path == "/ppid":
        return Response(str(os.getppid()))
    if path in ATTACKS:
        return Response(json.dumps(attempt(lambda: ATTACKS[path](q))), headers={"Content-Type": "application/json"})
    return Response.error(404)
