"""The worker's event loop: runs ``handleRequest`` for each REQUEST stream, multiplexed on one channel."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import os
import socket
import sys
import traceback
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from yarl import URL

from protoreg.errors import MessageError, PermissionDenied, UnknownMessage
from protoreg.ipc import (
    MAX_CHUNK,
    MAX_FILE,
    SHA256_HEX,
    Channel,
    FrameType,
    decode_json,
    encode_head,
    encode_json,
)
from protoreg.messages import FileSlice, Request, Response, check_header, check_status
from protoreg.worker.loader import BundleFinder, load_script

Handler = Callable[[Request], Awaitable[Any]]
_current_stream: contextvars.ContextVar[int] = contextvars.ContextVar("protoreg_stream", default=0)


class HandlerFault(Exception):
    """A handler misbehaved; ``status`` is what the parent answers (500 raised, 502 bad response)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _describe_exception(exc: BaseException, label: str) -> str:
    """``ValueError: boom (at protocol/x.py:12 in handleRequest)``: the innermost frame inside the bundle."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(label + "/"):
            where = f" (at {frame.filename[len(label) + 1:]}:{frame.lineno} in {frame.name})"
            break
    return f"{type(exc).__name__}: {exc}{where}"


def _check_response(resp: object, script: str) -> Response:
    if not isinstance(resp, Response):
        raise HandlerFault(502, f"handler {script} returned {type(resp).__name__}, not a protoreg.Response")
    problem = check_status(resp.status)
    if problem is None:
        for name, value in resp.headers.items():
            problem = check_header(name, value)
            if problem:
                break
    if problem is None and not (resp.body is None or isinstance(resp.body, (bytes, bytearray, memoryview, str))
                                or isinstance(resp.body, AsyncIterable)):
        problem = f"body must be bytes, str, an async iterable of bytes or None, got {type(resp.body).__name__}"
    if problem:
        raise HandlerFault(502, f"handler {script} returned an invalid response: {problem}")
    return resp


class FilteredResponse:
    """What a response filter is told about the response it filters: ``url`` (the custom URL), ``status``,
    ``headers`` (read-only; a filter changes the body only)."""

    __slots__ = ("headers", "status", "url")

    def __init__(self, url: URL, status: int, headers: Any) -> None:
        self.url, self.status, self.headers = url, status, headers


def _filter_handler(fn: Any) -> Handler:
    """A response filter as a handler: the filtered response's body comes in as the request body, its URL in the
    query and its headers as the request headers; the filter's output is the response body (protoreg/filters.py)."""

    async def run(request: Request) -> Response:
        page = FilteredResponse(URL(request.url.query.get("url", ""), encoded=True),
                                int(request.url.query.get("status", "200")), request.headers)
        out = fn(page, request.stream())
        if inspect.isawaitable(out):
            out = await out
        return Response(out, headers={"content-type": "application/octet-stream"})

    return run


class WorkerServer:
    def __init__(self, config: dict[str, Any], files: dict[str, bytes]) -> None:
        self.label = config["label"]
        self.data_dir: str | None = config.get("data_dir")
        self.finder = BundleFinder(files, self.label)
        self.handlers: dict[str, tuple[str, Handler | None, str | None]] = {}
        for scheme, script in config["handlers"].items():
            self.handlers[scheme] = (script, *self._load(scheme, script))
        self.commands: dict[str, str] = config.get("commands") or {}  # protoreg/commands.py: loaded when first run
        self.filters: dict[str, str] = config.get("filters") or {}  # protoreg/filters.py: loaded when first run
        #: A named sandbox's worker (protoreg/sandboxes.py): its script's handleMessage, or why it failed to load.
        self.sandbox_script: str | None = config.get("sandbox_script")
        self.on_message: Callable[[str, Any], Awaitable[Any]] | None = None
        self.sandbox_error: str | None = None
        if self.sandbox_script is not None:
            fn, self.sandbox_error = self._load("sandbox", self.sandbox_script, "handleMessage")
            self.on_message = fn  # type: ignore[assignment]
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.calls: dict[int, asyncio.Future[Any]] = {}
        self._next_call = 1
        self.channel: Channel | None = None
        self.done = asyncio.get_running_loop().create_future()

    def _load(self, scheme: str, script: str, attr: str = "handleRequest") -> tuple[Handler | None, str | None]:
        if attr != "handleRequest":  # an extension command, a sandbox's handleMessage or a response filter
            what, args = {"handleMessage": ("sandbox", "name, payload"),
                          "filterResponse": ("response filter", "response, chunks")}.get(attr, ("command", "command"))
            try:
                module = load_script(self.finder, script, f"_protoreg_{what}_{scheme.replace('-', '_')}")
            except BaseException as exc:
                return None, f"{what} script {script} failed to load: {_describe_exception(exc, self.label)}"
            fn = getattr(module, attr, None)
            if fn is None or not (inspect.iscoroutinefunction(fn)
                                  or (attr == "filterResponse" and inspect.isasyncgenfunction(fn))):
                return None, f"{what} script {script} must define `async def {attr}({args})`"
            return fn, None
        name = f"_protoreg_handler_{scheme.replace('+', '_')}"
        try:
            module = load_script(self.finder, script, name)
        except BaseException as exc:
            return None, f"handler script {script} failed to load: {_describe_exception(exc, self.label)}"
        fn = getattr(module, "handleRequest", None)
        if fn is None:
            return None, f"handler script {script} does not define handleRequest(request). Add " \
                         "`async def handleRequest(request): ...` to it"
        if not inspect.iscoroutinefunction(fn):
            return None, f"handleRequest in {script} must be `async def`, got {type(fn).__name__}"
        return fn, None

    # -- frames -----------------------------------------------------------------------------------------------
    def on_frame(self, ftype: int, stream: int, payload: bytes) -> None:
        if ftype == FrameType.REQUEST:
            head = decode_json(payload)
            assert self.channel is not None
            # Open the body now: its DATA frames may follow in this very read, before the task runs.
            body = self.channel.open_inbound(stream) if head.get("body") else None
            self.tasks[stream] = asyncio.ensure_future(self._serve(stream, head, body))
        elif ftype == FrameType.ABORT:
            task = self.tasks.pop(stream, None)
            if task is not None:
                task.cancel()
            assert self.channel is not None
            self.channel.close_inbound(stream, ConnectionAbortedError("request aborted by the client"))
            self.channel.close_outbound(stream)
        elif ftype == FrameType.RESULT:
            if payload[:1] == b"\x00":  # binary RESULT: its bytes go back under value["data"] (issue 15)
                n = int.from_bytes(payload[1:5], "big")
                msg = decode_json(payload[5:5 + n])
                if isinstance(msg.get("value"), dict):
                    msg["value"]["data"] = payload[5 + n:]
            else:
                msg = decode_json(payload, limit=64 << 20)
            fut = self.calls.pop(msg.get("id", -1), None)
            if fut is not None and not fut.done():
                if msg.get("ok"):
                    fut.set_result(msg.get("value"))
                else:
                    err = msg.get("error") or {}
                    text = str(err.get("message", "capability call failed"))
                    if err.get("type") in ("MessageError", "UnknownMessage"):
                        fut.set_exception(MessageError(text, str(err.get("kind") or "failed")))
                    else:
                        cls = PermissionDenied if err.get("type") == "PermissionDenied" else RuntimeError
                        fut.set_exception(cls(text))
        elif ftype == FrameType.PING:
            assert self.channel is not None
            self.channel.send(FrameType.PONG, 0, payload)
        elif ftype == FrameType.SHUTDOWN:
            if not self.done.done():
                self.done.set_result(None)

    async def call(self, cap: str, args: dict[str, Any]) -> Any:
        """A capability call to the broker, on behalf of the request this task is serving."""
        assert self.channel is not None
        call_id = self._next_call
        self._next_call += 1
        fut = asyncio.get_running_loop().create_future()
        self.calls[call_id] = fut
        self.channel.send_json(FrameType.CALL, _current_stream.get(), {"id": call_id, "cap": cap, "args": args})
        return await fut

    def on_lost(self, exc: BaseException | None) -> None:
        for task in self.tasks.values():
            task.cancel()
        if not self.done.done():
            self.done.set_result(None)

    async def _message(self, stream: int, url: URL, body: Any) -> None:
        """A message to this named sandbox: JSON payload in, ``{"ok": ..., "value"|"error": ...}`` out."""
        channel = self.channel
        assert channel is not None
        try:
            if self.on_message is None:
                raise HandlerFault(500, self.sandbox_error or "no handleMessage")
            raw = b"".join([c async for c in body]) if body is not None else b"null"
            _current_stream.set(stream)
            name = url.path.lstrip("/")
            try:
                value = await self.on_message(name, json.loads(raw))
                reply = {"ok": True, "value": value}
            except UnknownMessage as exc:
                reply = {"ok": False, "error": {"kind": "unknown_message",
                                                "message": f"sandbox {self.label} does not handle {name!r}: {exc}"}}
            except MessageError as exc:
                reply = {"ok": False, "error": {"kind": exc.kind, "message": str(exc)}}
            except PermissionDenied as exc:
                reply = {"ok": False, "error": {"kind": "refused", "message": f"sandbox {self.label}: {exc}"}}
            except Exception as exc:
                reply = {"ok": False, "error": {"kind": "failed", "message": f"sandbox {self.label}'s handleMessage"
                                                f"({name!r}) raised {_describe_exception(exc, self.label)}"}}
            try:
                data = json.dumps(reply, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                data = json.dumps({"ok": False, "error": {"kind": "not_json", "message": (
                    f"sandbox {self.label} replied to {name!r} with a value that is not JSON: {exc}")}}).encode()
            head_frame = encode_json({"status": 200, "headers": [["content-type", "application/json"]]})
            channel.open_outbound(stream)
            channel.send(FrameType.RESPONSE, stream, head_frame)
            await channel.send_data(stream, data)
            channel.end_data(stream)
        except HandlerFault as fault:
            if not channel.closed:
                channel.close_outbound(stream)
                channel.send_json(FrameType.ERROR, stream, {"status": fault.status, "message": str(fault),
                                                            "started": False})
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            channel.close_inbound(stream)
            self.tasks.pop(stream, None)

    async def _send_slice(self, stream: int, piece: FileSlice, script: str) -> None:
        """A FileSlice: by reference (a FILE frame; the parent reads and verifies it), or for a file over MAX_FILE
        read and verified here and sent as data."""
        from protoreg.worker.files import plain_relative

        channel = self.channel
        assert channel is not None
        root, path = self.data_dir, piece.path
        digest = piece.sha256.lower() if isinstance(piece.sha256, str) else ""
        if root is None or not plain_relative(path) or not SHA256_HEX.fullmatch(digest):
            raise HandlerFault(502, f"handler {script} streamed {piece!r}: a FileSlice needs a data dir (the "
                                    "\"storage\" permission), a relative path inside it and a hex sha256")
        offset, length = piece.offset, piece.length
        if type(offset) is not int or not (length is None or type(length) is int) or offset < 0 or \
                (length is not None and length < 0):
            raise HandlerFault(502, f"handler {script} streamed {piece!r}: offset and length must be integers >= 0")
        try:
            size = os.stat(os.path.join(root, path)).st_size
        except OSError as exc:
            raise HandlerFault(502, f"handler {script} streamed {piece!r}: {exc.strerror}") from None
        if length is None:
            length = max(0, size - offset)
        if offset + length > size:
            raise HandlerFault(502, f"handler {script} streamed {piece!r}: the file holds {size} bytes")
        if length == 0:
            return
        if size <= MAX_FILE:
            await channel.send_file(stream, {"path": path, "sha256": digest, "offset": offset, "length": length})
            return
        import hashlib
        import hmac

        with open(os.path.join(root, path), "rb") as f:
            data = f.read()
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
            raise HandlerFault(502, f"handler {script} streamed {piece!r}, whose content does not have that sha256")
        await channel.send_data(stream, memoryview(data)[offset:offset + length])

    async def _serve(self, stream: int, head: dict[str, Any], body: Any) -> None:
        channel = self.channel
        assert channel is not None
        url = URL(head["url"], encoded=True)
        if self.sandbox_script is not None:
            await self._message(stream, url, body)
            return
        if url.scheme not in self.handlers and url.scheme in self.commands:
            self.handlers[url.scheme] = (self.commands[url.scheme],
                                         *self._load(url.scheme, self.commands[url.scheme], "runCommand"))
        if url.scheme not in self.handlers and url.scheme in self.filters:
            fn, err = self._load(url.scheme, self.filters[url.scheme], "filterResponse")
            self.handlers[url.scheme] = (self.filters[url.scheme], _filter_handler(fn) if fn else None, err)
        script, handler, load_error = self.handlers.get(url.scheme, ("?", None, f"no handler for {url.scheme}"))
        started = False
        iterator: Any = None
        try:
            if handler is None:
                raise HandlerFault(500, load_error or "no handler")
            _current_stream.set(stream)
            request = Request(url, method=head["method"], headers=head["headers"], body=body,
                              origin=head.get("origin"))
            try:
                result = await handler(request)
            except HandlerFault:
                raise
            except Exception as exc:
                raise HandlerFault(500, f"handler {script} raised {_describe_exception(exc, self.label)}") from None
            resp = _check_response(result, script)
            payload = resp.body
            try:
                if isinstance(payload, str):
                    payload = payload.encode()
                head_frame = encode_head({"status": resp.status, "headers": list(resp.headers.items())})
            except (UnicodeEncodeError, ValueError, TypeError) as exc:
                raise HandlerFault(502, f"handler {script} returned a response that can't be encoded as UTF-8 "
                                        f"({exc}): a str body or header holds a lone surrogate. Return bytes, or "
                                        "text without undecodable characters") from None
            if isinstance(payload, (bytes, bytearray, memoryview)) and len(payload) <= MAX_CHUNK:
                # Small body: head, data and end leave in one write.
                frames = [(FrameType.RESPONSE, stream, head_frame)]
                if payload:
                    frames.append((FrameType.DATA, stream, bytes(payload)))
                frames.append((FrameType.END, stream, b""))
                channel.send_frames(frames)
                return
            channel.open_outbound(stream)
            channel.send(FrameType.RESPONSE, stream, head_frame)
            started = True
            if isinstance(payload, (bytes, bytearray, memoryview)):
                await channel.send_data(stream, payload)
            elif payload is not None:
                iterator = aiter(payload)
                try:
                    async for chunk in iterator:
                        if type(chunk) is FileSlice:
                            await self._send_slice(stream, chunk, script)
                            continue
                        if not isinstance(chunk, (bytes, bytearray, memoryview)):
                            raise HandlerFault(502, f"handler {script} streamed a {type(chunk).__name__} chunk; "
                                                    "body chunks must be bytes or FileSlice")
                        if chunk:
                            await channel.send_data(stream, chunk)
                except HandlerFault:
                    raise
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    raise HandlerFault(500, f"handler {script}'s body stream raised "
                                            f"{_describe_exception(exc, self.label)}") from None
            channel.end_data(stream)
        except HandlerFault as fault:
            if not channel.closed:
                channel.close_outbound(stream)
                channel.send_json(FrameType.ERROR, stream, {"status": fault.status, "message": str(fault),
                                                            "started": started})
        except (asyncio.CancelledError, ConnectionError):
            pass  # aborted by the parent, or the channel is gone
        except Exception as exc:  # a fault of ours: the caller still gets a prompt answer, never a timeout
            if not channel.closed:
                channel.close_outbound(stream)
                channel.send_json(FrameType.ERROR, stream, {
                    "status": 502, "started": started,
                    "message": f"handler {script} could not be answered: {type(exc).__name__}: {exc}"})
        finally:
            if iterator is not None and hasattr(iterator, "aclose"):
                try:
                    await iterator.aclose()
                except Exception:  # noqa: S110 - closing a broken generator must not mask the outcome
                    pass
            channel.close_inbound(stream)
            self.tasks.pop(stream, None)


async def _main(sock: socket.socket, config: dict[str, Any], files: dict[str, bytes],
                sandbox: dict[str, Any]) -> None:
    from protoreg import runtime

    server = WorkerServer(config, files)
    runtime._call = server.call
    runtime._data_dir = config.get("data_dir")
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    _transport, channel = await loop.create_unix_connection(
        lambda: Channel(server.on_frame, server.on_lost, window=config.get("window", 2 << 20),
                        max_frame=64 << 20),  # the parent is trusted: RESULTs may carry fetched bodies
        sock=sock,
    )
    server.channel = channel
    channel.send_json(FrameType.HELLO, 0, {
        "pid": os.getpid(), "sandbox": sandbox, "python": sys.version.split()[0],
        "load_errors": {s: err for s, (_, _, err) in server.handlers.items() if err},
    })
    _trim_heap()
    await server.done
    for task in list(server.tasks.values()):
        task.cancel()
    channel.close()


def _trim_heap() -> None:
    """Give the allocator's free pages back once the handlers are loaded: what start-up freed (decoded INIT
    files, import-time garbage) otherwise stays resident in every idle worker."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def run(sock: socket.socket, config: dict[str, Any], files: dict[str, bytes], sandbox: dict[str, Any]) -> None:
    from protoreg.loops import loop_factory

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with asyncio.Runner(loop_factory=loop_factory(config.get("event_loop", "auto"))) as runner:
        runner.run(_main(sock, config, files, sandbox))
