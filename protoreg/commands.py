"""Extension commands: host-side commands an extension declares in its manifest (``"commands"``), run in the
extension's own sandboxed worker with its own grants (``protoreg ext run EXT NAME ARGS``).

A command is a request on a scheme no extension can claim (``protoreg-cmd-<name>``), so web content, which reaches
handlers only through registered schemes, can never invoke one. The script defines::

    async def runCommand(command: protoreg.Request) -> protoreg.Response:
        args = json.loads(command.headers["X-Protoreg-Args"])   # the argument list
        data = await command.read()     # the input the host streamed in (stdin), if any
        return Response("done\\n")      # 2xx: success (exit 0); otherwise the body is the error (exit 1)

Input: the body is streamed from the host with the worker channel's flow control, so inputs of any size use bounded
memory; :func:`path_input` streams a file as its bytes or a directory as a POSIX (pax) tar archive, and the
``X-Protoreg-Input`` header says which (``file`` or ``directory``). A directory is walked without following
symlinks (they are archived as symlinks), in name order, and hidden entries (names starting with ``.``) are left
out unless the caller asks for them: a command never sees a ``.git`` or ``.env`` it was not meant to. Sockets,
fifos and devices are refused.

Output: a 2xx body is collected, or, with ``output=``, handed chunk by chunk to the caller (``protoreg ext run
-o FILE`` writes it to a file), so outputs of any size use bounded memory too.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tarfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protoreg.errors import HandlerError

if TYPE_CHECKING:
    from protoreg.session import Session

__all__ = ["COMMAND_SCHEME_PREFIX", "CommandResult", "command_scheme", "path_input", "run_command"]

COMMAND_SCHEME_PREFIX = "protoreg-cmd-"
ARGS_HEADER = "X-Protoreg-Args"
INPUT_HEADER = "X-Protoreg-Input"
CHUNK = 256 * 1024
MAX_ERROR_BYTES = 64 * 1024


def command_scheme(name: str) -> str:
    return COMMAND_SCHEME_PREFIX + name


class CommandResult:
    def __init__(self, status: int, headers: list[tuple[str, str]], output: bytes) -> None:
        self.status = status
        self.headers = headers
        self.output = output

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299


def _file_chunks(f: Any, size: int) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{f.name} shrank while it was being read")
            left -= len(chunk)
            yield chunk

    return chunks()


def _tar_entries(root: Path, hidden: bool) -> list[tuple[str, Path]]:
    """Every entry under ``root`` (relative name, path), depth first in name order, symlinks not followed."""
    found: list[tuple[str, Path]] = []

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            path = Path(entry.path)
            found.append((prefix + entry.name, path))
            if entry.is_dir(follow_symlinks=False):
                walk(path, prefix + entry.name + "/")

    walk(root, "")
    return found


async def _tar_stream(root: Path, hidden: bool) -> AsyncIterator[bytes]:
    for name, path in _tar_entries(root, hidden):
        st = path.lstat()
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), 0
        if stat.S_ISLNK(st.st_mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(st.st_mode):
            with path.open("rb") as f:
                info.size = os.fstat(f.fileno()).st_size
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                async for chunk in _file_chunks(f, info.size):
                    yield chunk
                if info.size % tarfile.BLOCKSIZE:
                    yield tarfile.NUL * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
            continue
        else:
            raise OSError(f"{path} is neither a file, a directory nor a symlink")
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)


def path_input(path: Path, *, hidden: bool = False) -> tuple[str, AsyncIterator[bytes]]:
    """A command's input from a host path: ``("file", its bytes)`` or ``("directory", a tar archive of it)``,
    read lazily in chunks. Hidden entries of a directory are left out unless ``hidden``. A top-level symlink is
    followed. Raises OSError for a path that is neither a file nor a directory."""
    if path.is_dir():
        return "directory", _tar_stream(path, hidden)
    if not path.is_file():
        raise OSError(f"{path} does not exist or is neither a file nor a directory")

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    return "file", chunks()


async def run_command(session: Session, ext_id: str, name: str, args: Sequence[str] = (),
                      stdin: bytes | AsyncIterable[bytes] | None = None, *, timeout: float = 120,
                      input_kind: str = "file", output: Callable[[bytes], Any] | None = None) -> CommandResult:
    """Run ``name`` of extension ``ext_id`` in its worker; raises KeyError for an unknown extension or command.

    ``input_kind`` (``file`` or ``directory``, see :func:`path_input`) is passed with a ``stdin``. With ``output``,
    a 2xx body goes to it chunk by chunk (it may return an awaitable) and the result's ``output`` is empty."""
    ext = session.registry.extensions.get(ext_id)
    if ext is None:
        raise KeyError(f"no installed extension {ext_id!r}")
    commands = getattr(ext.manifest, "commands", {}) or {}
    if name not in commands:
        known = ", ".join(sorted(commands)) or "none"
        raise KeyError(f"extension {ext_id} has no command {name!r} (its commands: {known})")
    await session.start()
    headers = [(ARGS_HEADER, json.dumps(list(args)))]
    if stdin is not None:
        headers.append((INPUT_HEADER, input_kind))
    head = {"method": "POST", "url": f"{command_scheme(name)}://run/", "headers": headers, "origin": None}
    stream = await session.workers.dispatch(ext, head, stdin, None)
    try:
        status, answer = await asyncio.wait_for(asyncio.shield(stream.head), timeout)
    except (TimeoutError, HandlerError) as exc:
        stream.abort()
        if isinstance(exc, HandlerError):
            return CommandResult(getattr(exc, "status", 500), [], str(exc).encode())
        return CommandResult(504, [], f"command {name} of {ext_id} did not answer within {timeout:g}s".encode())
    parts: list[bytes] = []
    kept = 0
    sink = output if output is not None and 200 <= status <= 299 else None
    body: Any = stream.body
    if body is not None:
        while True:
            try:
                chunk = await body.next_chunk(timeout)
            except StopAsyncIteration:
                break
            if sink is not None:
                if asyncio.iscoroutine(done := sink(chunk)):
                    await done
            elif kept < MAX_ERROR_BYTES or output is None:
                parts.append(chunk)
                kept += len(chunk)
    return CommandResult(status, answer, b"".join(parts))
