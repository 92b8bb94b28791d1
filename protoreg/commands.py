"""Extension commands: host-side commands an extension declares in its manifest (``"commands"``), run in the
extension's own sandboxed worker with its own grants (``protoreg ext run EXT NAME ARGS``).

A command is a request on a scheme no extension can claim (``protoreg-cmd-<name>``), so web content, which reaches
handlers only through registered schemes, can never invoke one. The script defines::

    async def runCommand(command: protoreg.Request) -> protoreg.Response:
        args = json.loads(command.headers["X-Protoreg-Args"])   # the argument list
        data = await command.read()     # the input file the host streamed in (stdin), if any
        return Response("done\\n")      # 2xx: success (exit 0); otherwise the body is the error (exit 1)

The body is streamed from the host with the worker channel's flow control, so inputs of any size use bounded memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, Sequence
from typing import TYPE_CHECKING, Any

from protoreg.errors import HandlerError

if TYPE_CHECKING:
    from protoreg.session import Session

__all__ = ["COMMAND_SCHEME_PREFIX", "CommandResult", "command_scheme", "run_command"]

COMMAND_SCHEME_PREFIX = "protoreg-cmd-"
ARGS_HEADER = "X-Protoreg-Args"


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


async def run_command(session: Session, ext_id: str, name: str, args: Sequence[str] = (),
                      stdin: bytes | AsyncIterable[bytes] | None = None, *, timeout: float = 120) -> CommandResult:
    """Run ``name`` of extension ``ext_id`` in its worker; raises KeyError for an unknown extension or command."""
    ext = session.registry.extensions.get(ext_id)
    if ext is None:
        raise KeyError(f"no installed extension {ext_id!r}")
    commands = getattr(ext.manifest, "commands", {}) or {}
    if name not in commands:
        known = ", ".join(sorted(commands)) or "none"
        raise KeyError(f"extension {ext_id} has no command {name!r} (its commands: {known})")
    await session.start()
    head = {"method": "POST", "url": f"{command_scheme(name)}://run/",
            "headers": [(ARGS_HEADER, json.dumps(list(args)))], "origin": None}
    stream = await session.workers.dispatch(ext, head, stdin, None)
    try:
        status, headers = await asyncio.wait_for(asyncio.shield(stream.head), timeout)
    except (TimeoutError, HandlerError) as exc:
        stream.abort()
        if isinstance(exc, HandlerError):
            return CommandResult(getattr(exc, "status", 500), [], str(exc).encode())
        return CommandResult(504, [], f"command {name} of {ext_id} did not answer within {timeout:g}s".encode())
    parts: list[bytes] = []
    body: Any = stream.body
    if body is not None:
        while True:
            try:
                parts.append(await body.next_chunk(timeout))
            except StopAsyncIteration:
                break
    return CommandResult(status, headers, b"".join(parts))
