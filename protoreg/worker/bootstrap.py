"""Worker entry point (``python -I -m protoreg.worker FD``): the first code a worker process runs.

Order matters. While the process is still single-threaded it reads INIT from the inherited channel with a blocking
read, applies the sandbox (namespaces, rlimits, seccomp and Landlock apply per thread, and unsharing a user
namespace fails once threads exist), and only then executes the handler scripts from the verified bytes and starts
the event loop.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any

from protoreg.ipc import FrameType, encode_frame, encode_json, recv_frame_blocking

_LEN = struct.Struct("!I")


def decode_init(payload: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """INIT payload: u32 JSON length, the JSON config, then the bundle's files back to back."""
    (n,) = _LEN.unpack_from(payload, 0)
    config = json.loads(payload[_LEN.size : _LEN.size + n])
    files: dict[str, bytes] = {}
    offset = _LEN.size + n
    for path, size in config.pop("files"):
        files[path] = payload[offset : offset + size]
        offset += size
    return config, files


def encode_init(config: dict[str, Any], files: dict[str, bytes]) -> bytes:
    header = json.dumps({**config, "files": [[p, len(b)] for p, b in files.items()]}).encode()
    return b"".join([_LEN.pack(len(header)), header, *files.values()])


def _apply_sandbox(spec: dict[str, Any] | None, channel_fd: int) -> dict[str, Any]:
    if spec is None:
        return {"enabled": False, "layers": []}
    from protoreg.sandbox import SandboxPolicy, apply_sandbox

    fields = dict(spec)
    for key in ("read_paths", "write_paths"):
        fields[key] = tuple(fields.get(key, ()))
    fields["required"] = frozenset(fields.get("required", ()))
    fields["keep_fds"] = (channel_fd,)
    report = apply_sandbox(SandboxPolicy(**fields))
    return {"enabled": True, **report.to_dict()}


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: python -m protoreg.worker FD (started by the protoreg parent, not by hand)\n")
        raise SystemExit(2)
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    # Warm imports while idle (a spare waits here), so specialising is quick. Importing spawns no thread.
    import protoreg.runtime
    import protoreg.sandbox
    import protoreg.worker.audit
    import protoreg.worker.serve  # noqa: F401
    try:
        ftype, _flags, _stream, payload = recv_frame_blocking(sock)
    except EOFError:
        raise SystemExit(0) from None  # a spare worker the host no longer needs
    if ftype == FrameType.SHUTDOWN:
        raise SystemExit(0)
    if ftype != FrameType.INIT:
        raise SystemExit(f"protoreg worker: expected INIT, got frame type {ftype}")
    config, files = decode_init(payload)
    os.chdir("/")
    try:
        sandbox = _apply_sandbox(config.get("sandbox"), sock.fileno())  # before threads, loop, handler code
    except Exception as exc:  # a required layer could not engage: tell the parent why, then exit
        sock.sendall(encode_frame(FrameType.HELLO, 0, encode_json(
            {"pid": os.getpid(), "fatal": f"{type(exc).__name__}: {exc}"})))
        raise SystemExit(3) from None
    spec = config.get("sandbox")
    if spec is not None:
        from protoreg.sandbox.mounts import DEVICES, SYSTEM_FILES
        from protoreg.worker import audit

        audit.install(config["label"], (*spec.get("read_paths", ()), *SYSTEM_FILES),
                      (*spec.get("write_paths", ()), *DEVICES))
    from protoreg.worker.serve import run

    run(sock, config, files, sandbox)


if __name__ == "__main__":
    main()
