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


LIBC = ctypes.CDLL(None, use_errno=True)
X86 = os.uname().machine == "x86_64"
NR = {"ioprio_set": (251, 30), "shmget": (29, 194), "shmat": (30, 196), "msgget": (68, 186), "inotify_init1": (294, 26),
      "inotify_add_watch": (254, 27), "memfd_create": (319, 279), "fsetxattr": (190, 7)}


def sys_(name, *args):
    r = LIBC.syscall(NR[name][0 if X86 else 1], *args)
    if r < 0:
        raise OSError(ctypes.get_errno(), name)
    return r


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return "connected"


def shm_overwrite(key):
    shmid = sys_("shmget", int(key), 4096, 0)
    LIBC.shmat.restype = ctypes.c_void_p
    addr = LIBC.shmat(shmid, None, 0)
    ctypes.memmove(addr, b"pwned", 5)
    return "overwritten"


def shm_hoard(size):
    shmid = sys_("shmget", 0, int(size), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    return shmid


def inotify(path):
    fd = sys_("inotify_init1", 0)
    return sys_("inotify_add_watch", fd, path.encode(), 0xFFF)


def setuid_in_data_dir():
    from protoreg import runtime
    path = runtime.data_dir() / "rootshell"
    path.write_bytes(b"#!/bin/sh\nid\n")
    os.chmod(path, 0o4755)
    return "chmod done"


def file_capability():
    from protoreg import runtime
    path = runtime.data_dir() / "capped"
    path.write_bytes(b"x")
    with open(path, "rb") as f:
        value = bytes.fromhex("0000000200000000000000000000000000000000")  # a vfs_cap_data header
        name = b"security.capability"
        buf = ctypes.create_string_buffer(value, len(value))
        sys_("fsetxattr", f.fileno(), name, buf, len(value), 0)
    return "capability set"


def cpu_burn(seconds):
    import hashlib
    import threading
    import time
    data = bytes(1 << 20)
    stop = time.monotonic() + float(seconds)

    def burn():
        while time.monotonic() < stop:
            hashlib.sha256(data).digest()  # releases the GIL: threads really use several CPUs

    threads = [threading.Thread(target=burn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return "burned"


def channel():
    """The worker's IPC socket and the id of the stream being served (a compromised worker knows both)."""
    import sys
    server = sys.modules["protoreg.runtime"]._call.__self__
    stream = sys.modules["protoreg.worker.serve"]._current_stream.get()
    return server.channel._transport.get_extra_info("socket").fileno(), stream


def raw_frames(frames, pause=0.0):
    """Write raw frames straight to the channel, without ever reading it (the event loop is blocked meanwhile)."""
    import select
    import struct
    import time
    fd, stream = channel()
    sent = 0
    for ftype, sid, payload in frames:
        data = struct.pack("!BBII", ftype, 0, stream if sid is None else sid, len(payload)) + payload
        while data:
            try:
                n = os.write(fd, data)
                data = data[n:]
            except BlockingIOError:
                if not select.select([], [fd], [], 2.0)[1]:
                    return {"sent": sent, "stuck": True}
            except OSError as e:
                return {"sent": sent, "error": e.errno}
        sent += 1
    time.sleep(pause)
    return {"sent": sent}


def call_flood(n, batch_size):
    """Capability calls in batches while never reading the results (small batches: never many outstanding)."""
    import time
    sent = 0
    for batch in range(int(n) // batch_size):
        frames = [(10, None, json.dumps({"id": 1000 + batch * batch_size + i, "cap": "storage.get",
                                         "args": {"key": "big"}}).encode()) for i in range(batch_size)]
        out = raw_frames(frames)
        sent += out["sent"]
        if "error" in out or "stuck" in out:
            return {"sent": sent, **out}
        time.sleep(0.05)
    time.sleep(3.0)
    return {"sent": sent}


def nest(depth):
    from protoreg import runtime
    fd = os.open(runtime.data_dir(), os.O_RDONLY)
    for _ in range(int(depth)):
        os.mkdir("d", dir_fd=fd)
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    with open(os.open("secret", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
        f.write("left behind")
    os.close(fd)
    return "nested"


def big_file(mib):
    from protoreg import runtime
    with open(runtime.data_dir() / "big", "wb") as f:
        for _ in range(int(mib)):
            f.write(b"x" * (1 << 20))
            f.flush()
    return "written"


def fill_disk(files, pause):
    """Many 1 MiB files, paced: each stays under RLIMIT_FSIZE, only the host's measurement can stop them."""
    import time

    from protoreg import runtime
    for i in range(int(files)):
        (runtime.data_dir() / f"fill-{i}").write_bytes(os.urandom(1 << 20))
        time.sleep(float(pause))
    return "filled"


def many_files(n):
    """Empty files: no data blocks, but each takes an inode of the host's filesystem."""
    from protoreg import runtime
    d = runtime.data_dir() / "many"
    d.mkdir(exist_ok=True)
    for i in range(int(n)):
        (d / str(i)).touch()
    return "created"


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
    "/unix": lambda q: unix_connect(q["path"]),
    "/chmod": lambda q: os.chmod(q["path"], 0o777),
    "/chown": lambda q: os.chown(q["path"], 65534, 65534),
    "/utime": lambda q: os.utime(q["path"], (0, 0)),
    "/setxattr": lambda q: os.setxattr(q["path"], "user.pwned", b"1"),
    "/setuid": lambda q: setuid_in_data_dir(),
    "/filecap": lambda q: file_capability(),
    "/stat": lambda q: os.stat(q["path"]).st_size,
    "/readlink": lambda q: os.readlink(q["path"]),
    "/inotify": lambda q: inotify(q["path"]),
    "/shm": lambda q: shm_overwrite(q["key"]),
    "/shm_hoard": lambda q: shm_hoard(q["size"]),
    "/msgq": lambda q: sys_("msgget", int(q["key"]), 0),
    "/memfd": lambda q: sys_("memfd_create", b"hoard", 0),
    "/listroot": lambda q: os.listdir("/"),
    "/cpu": lambda q: cpu_burn(q["seconds"]),
    "/bigalloc": lambda q: len(bytearray(int(q["mib"]) * 1024 * 1024)),
    "/nest": lambda q: nest(q["depth"]),
    "/affinity": lambda q: os.sched_setaffinity(int(q["pid"]), {int(q["cpu"])}),
    "/sched_idle": lambda q: os.sched_setscheduler(int(q["pid"]), os.SCHED_IDLE, os.sched_param(0)),
    "/ioprio": lambda q: sys_("ioprio_set", 1, int(q["pid"]), 3 << 13),  # IOPRIO_WHO_PROCESS, class idle
    "/bigfile": lambda q: big_file(q["mib"]),
    "/fill": lambda q: fill_disk(q["files"], q["pause"]),
    "/many": lambda q: many_files(q["n"]),
    "/own_affinity": lambda q: os.sched_setaffinity(0, os.sched_getaffinity(0)),
}


async def handleRequest(request):
    path, q = request.url.path, dict(request.url.query)
    if path == "/store_big":
        from protoreg import runtime
        await runtime.storage.set("big", b"x" * 100_000)
        return Response("stored")
    if path == "/calls":
        return Response(json.dumps(call_flood(q["n"], int(q.get("batch", 20)))))
    if path == "/pongs":
        return Response(json.dumps(raw_frames([(14, 0, os.urandom(8)) for _ in range(100_000)])))
    if path == "/empty_data":
        return Response(json.dumps(raw_frames([(5, None, b"") for _ in range(100_000)])))
    if path == "/forge_log":
        print("innocent\nERROR protoreg.broker: forged line\x1b[2J\x1b[31mred\rcarriage")
        raise ValueError("boom\nERROR forged second line\x1b]0;title\x07")
    if path == "/fetches":
        import asyncio

        from protoreg import runtime

        async def one():
            try:
                return (await runtime.fetch(q["url"])).status
            except PermissionError as e:
                return str(e)
        results = await asyncio.gather(*(one() for _ in range(int(q["n"]))))
        return Response(json.dumps(results))
    if path == "/fill_storage":
        from protoreg import runtime
        stored = 0
        try:
            for i in range(int(q["n"])):
                await runtime.storage.set(f"k{i}", b"y" * 100_000)
                stored += 1
        except PermissionError as e:
            return Response(json.dumps({"stored": stored, "error": str(e)}))
        return Response(json.dumps({"stored": stored}))
    if path == "/slice":  # body bytes by reference: the parent must not read outside the data dir, or unverified
        import hashlib as _hashlib

        from protoreg import FileSlice, runtime
        d = runtime.data_dir()
        if q.get("link"):
            (d / "link").unlink(missing_ok=True)
            (d / "link").symlink_to(q["link"])
        digest = q.get("sha256") or _hashlib.sha256(b"mine").hexdigest()
        (d / "mine").write_bytes(b"mine")

        async def body():
            yield b"<"
            yield FileSlice(q["file"], digest, 0, int(q.get("length", 4)))
            yield b">"
        return Response(body())
    if path == "/raw_slice":  # the same, bypassing the worker's own checks: FILE frames written to the channel
        import asyncio
        import hashlib as _hashlib

        from protoreg import runtime
        d = runtime.data_dir()
        (d / "mine").write_bytes(b"mine")
        if q.get("link"):
            (d / "link").unlink(missing_ok=True)
            (d / "link").symlink_to(q["link"])
        ref = {"path": q["file"], "sha256": q.get("sha256") or _hashlib.sha256(b"mine").hexdigest(), "offset": 0,
               "length": int(q.get("length", 4))}
        head = json.dumps({"status": 200, "headers": []}).encode()
        raw_frames([(4, None, head), (15, None, json.dumps(ref).encode()), (6, None, b"")])
        await asyncio.sleep(30)  # the stream is answered; the parent reads the body meanwhile
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
