"""Parent-side handle on one worker process: spawn, specialise, multiplex requests, detect death, stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from pathlib import Path
from typing import Any

from protoreg._text import printable
from protoreg.errors import HandlerError, InvalidRequest, PermissionDenied, WorkerCrashed
from protoreg.ipc import (
    FRAME_COST,
    Channel,
    FrameType,
    InboundBody,
    ProtocolViolation,
    decode_json,
    encode_head,
    encode_json,
    use_msgspec,
)
from protoreg.messages import check_header, check_status
from protoreg.worker.config import WorkerConfig
from protoreg.worker.files import read_verified

__all__ = ["WorkerProcess", "WorkerStream"]

log = logging.getLogger("protoreg.worker")
use_msgspec()  # the parent's side of every channel: the fast codec (see protoreg/ipc.py)
_PKG_PARENT = str(Path(__file__).resolve().parents[2])
#: Capability calls one worker may have outstanding at once (each holds a task and possibly a connection).
MAX_CALLS = 64
_BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from protoreg.worker.bootstrap import main; main()"


class WorkerStream:
    """One request in flight: ``head`` resolves to (status, headers) or raises HandlerError; then ``body``."""

    __slots__ = ("body", "head", "id", "origin", "pump", "url", "worker")

    def __init__(self, worker: WorkerProcess, sid: int, url: str) -> None:
        self.worker = worker
        self.id = sid
        self.url = url
        self.head: asyncio.Future[tuple[int, list[tuple[str, str]]]] = asyncio.get_running_loop().create_future()
        self.body: InboundBody | None = None
        self.pump: asyncio.Task[None] | None = None
        #: Set by the parent for a message to a named sandbox: the origin of the handler request it serves.
        self.origin: str | None = None

    def abort(self) -> None:
        """Cancel the handler (client gone, timeout): the worker cancels its task and closes its stream."""
        self.worker._abort(self)


#: Threads reading FILE frames' files, per WorkerManager. Few on purpose: the reads release the GIL, but every
#: hand-back takes it, and the loop's default pool (CPUs + 4 threads) spent more time handing the GIL around than
#: hashing. Measured on 2 vCPUs (64 MiB ipfs file in a loop): parent CPU per 64 MiB 118-144 ms with 1 thread,
#: 120-137 with the default pool's 6, 94-97 with 2 (docs/benchmarks.md, bench/ipfs_read.py).
FILE_READ_THREADS = 2


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "closed its channel"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, channel: Channel, config: WorkerConfig) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.channel = channel
        self.config = config
        self.label = "(generic)"
        self.logger = log
        self.state = "starting"
        self.hello: dict[str, Any] = {}
        self.requests_served = 0
        self.started_at = time.monotonic()
        self.last_active = time.monotonic()
        self.exit_reason: str | None = None
        #: True when the host asked it to stop (idle, uninstall, shutdown): its exit is not a crash.
        self.stopped_by_host = False
        self.violation: str | None = None
        #: The cgroup holding this worker (set by the manager), or why there is none.
        self.cgroup: Any = None
        self.cgroup_error: str = ""
        #: The one origin this worker serves (extensions with origin_isolation "origin"), or None.
        self.bound_origin: str | None = None
        #: The extension this worker runs (set by the manager) and, for a named sandbox's worker, its name.
        self.extension_id: str | None = None
        self.sandbox: str | None = None
        #: The host path of the extension's data dir (set by the manager): where FILE frames may point.
        self.data_dir: str | None = None
        #: Bytes that data dir may hold (SandboxPolicy.disk_max; the manager's watcher enforces it), or None.
        self.disk_max: int | None = None
        #: Where FILE frames' files are read (the manager's few threads; None: the loop's default executor).
        self.file_reader: concurrent.futures.Executor | None = None
        self._streams: dict[int, WorkerStream] = {}
        self._next_id = 1
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: Runs a capability call (set by the host): (worker, stream or None, message) -> JSON-able value.
        self.on_call: Callable[[WorkerProcess, WorkerStream | None, dict[str, Any]], Awaitable[Any]] | None = None

    # -- life cycle -------------------------------------------------------------------------------------------
    @classmethod
    async def spawn(cls, config: WorkerConfig) -> WorkerProcess:
        """Start a generic worker: interpreter up, modules imported, waiting for INIT (not yet sandboxed)."""
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-B", "-c", _BOOT, _PKG_PARENT, str(child_sock.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=(child_sock.fileno(),),
                env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}, cwd="/", start_new_session=True,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        holder: list[WorkerProcess] = []
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_unix_connection(
            lambda: Channel(lambda t, s, p: holder[0]._on_frame(t, s, p),
                            lambda exc: holder[0]._on_lost(exc),
                            window=config.window, strict=True,
                            on_violation=lambda v: holder[0]._on_violation(v)),
            sock=parent_sock,
        )
        worker = cls(proc, channel, config)
        holder.append(worker)
        # Under load (a gateway), the requests dispatched in one loop iteration leave in one write that wakes the
        # worker once; a lone request still leaves at once. Measured in docs/benchmarks.md (bench/gateway.py).
        channel.busy = lambda: len(worker._streams) > 1
        worker._tasks = [
            asyncio.ensure_future(worker._drain_output(proc.stdout, "stdout")),
            asyncio.ensure_future(worker._drain_output(proc.stderr, "stderr")),
            asyncio.ensure_future(worker._watch()),
        ]
        return worker

    async def specialise(self, label: str, init_payload: bytes) -> dict[str, Any]:
        """Send INIT (the extension's verified files and sandbox policy) and wait for HELLO."""
        self.label = label
        self.logger = log.getChild(label.replace(".", "_"))
        self.channel.send(FrameType.INIT, 0, init_payload)
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._hello), self.config.start_timeout)
        except TimeoutError:
            self.kill()
            raise HandlerError(f"worker for {label} (pid {self.pid}) did not start within "
                               f"{self.config.start_timeout:g}s", status=502, extension=label) from None
        except HandlerError:
            self.kill()
            raise
        if hello.get("fatal"):
            self.kill()
            raise HandlerError(f"worker for {label} could not start: {printable(str(hello['fatal']))}", status=502,
                               extension=label)
        self.state = "ready"
        self.hello = hello
        self.last_active = time.monotonic()
        return hello

    @property
    def alive(self) -> bool:
        return self.state in ("starting", "ready") and not self.channel.closed

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    def rss(self) -> int | None:
        """Resident set size in bytes (Linux /proc), or None."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def stats(self) -> dict[str, Any]:
        return {"pid": self.pid, "extension": self.label, "state": self.state, "in_flight": self.in_flight,
                "requests_served": self.requests_served, "rss": self.rss(),
                "uptime": round(time.monotonic() - self.started_at, 3),
                "sandbox": self.hello.get("sandbox")}

    async def stop(self) -> None:
        """Ask the worker to exit; kill it after the grace period. Waits until it is reaped."""
        self.stopped_by_host = True
        if self.state != "dead":
            self.state = "stopping"
            with contextlib.suppress(ConnectionError):
                self.channel.send(FrameType.SHUTDOWN, 0)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), self.config.stop_grace)
            except TimeoutError:
                self.kill()
        await asyncio.shield(self.exited)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def ensure_responsive(self, within: float) -> bool:
        """Ping the worker's event loop; kill the worker if it doesn't answer ``within`` seconds (a handler stuck
        in a busy loop blocks every request of its extension). Returns whether it answered."""
        if not self.alive:
            return False
        token = os.urandom(8)
        waiter = asyncio.get_running_loop().create_future()
        self._pongs[token] = waiter
        try:
            self.channel.send(FrameType.PING, 0, token)
            await asyncio.wait_for(waiter, within)
            return True
        except (TimeoutError, ConnectionError):
            self.violation = (f"stopped answering (its event loop was blocked for more than {within:g}s, e.g. by a "
                              "handler in a busy loop) and was killed")
            self.logger.error("worker for %s (pid %s) %s", self.label, self.pid, self.violation)
            self.kill()
            return False
        finally:
            self._pongs.pop(token, None)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.channel.close()

    async def _watch(self) -> None:
        code = await self.proc.wait()
        self.exit_reason = self.violation or _exit_reason(code)
        self.channel.close()
        self._fail_all()
        self.state = "dead"
        if not self.exited.done():
            self.exited.set_result(None)

    def _fail_all(self) -> None:
        streams, self._streams = self._streams, {}
        if not streams and self._hello.done():
            return
        reason = self.exit_reason or "closed its channel"
        exc = WorkerCrashed(f"worker for {self.label} (pid {self.pid}) {reason} while handling "
                            f"{len(streams)} request(s)", extension=self.label)
        if not self._hello.done():
            self._hello.set_exception(exc)
            self._hello.exception()  # mark retrieved
        for st in streams.values():
            if not st.head.done():
                st.head.set_exception(exc)
                st.head.exception()
            elif st.body is not None:
                st.body.set_exception(exc)
            if st.pump is not None:
                st.pump.cancel()

    def _on_lost(self, exc: BaseException | None) -> None:
        # The process watcher fails the in-flight streams once it knows the exit status; a worker that closed
        # its channel but lingers is killed after a moment so that this always happens.
        if self.proc.returncode is None:
            asyncio.get_running_loop().call_later(1.0 if self.state != "stopping" else self.config.stop_grace,
                                                  self.kill)

    def _on_violation(self, v: ProtocolViolation) -> None:
        self.violation = f"broke the IPC protocol ({v}) and was killed"
        self.logger.error("worker for %s (pid %s) %s", self.label, self.pid, self.violation)
        self.kill()

    async def _drain_output(self, stream: asyncio.StreamReader | None, name: str) -> None:
        """Forward worker output to logging, tagged with the extension; a flood is counted and dropped."""
        if stream is None:
            return
        budget, window_start, dropped, pending = self.config.log_lines_per_second, time.monotonic(), 0, b""
        limit = self.config.log_line_max
        while True:
            data = await stream.read(65536)
            if not data:
                break
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            if len(pending) > limit:
                lines.append(pending)
                pending = b""
            now = time.monotonic()
            if now - window_start >= 1.0:
                if dropped:
                    self.logger.warning("[%s %s] %d lines of output suppressed (flood)", self.label, name, dropped)
                budget, window_start, dropped = self.config.log_lines_per_second, now, 0
            for line in lines:
                if budget <= 0:
                    dropped += 1
                    continue
                budget -= 1
                text = printable(line[:limit].decode("utf-8", "replace"))
                level = logging.INFO if name == "stdout" else logging.WARNING
                self.logger.log(level, "[%s %s] %s", self.label, name, text)
        if dropped:
            self.logger.warning("[%s %s] %d lines of output suppressed (flood)", self.label, name, dropped)

    # -- requests ---------------------------------------------------------------------------------------------
    def request(self, head: dict[str, Any], body: bytes | AsyncIterable[bytes] | None) -> WorkerStream:
        if not self.alive:
            raise WorkerCrashed(f"worker for {self.label} (pid {self.pid}) {self.exit_reason or 'is stopping'}",
                                extension=self.label)
        has_body = body is not None and body != b""
        try:  # encode before the stream exists: a head that can't be sent must not leave a stream behind
            frame = encode_head({**head, "body": has_body})
        except (UnicodeEncodeError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"can't send {head.get('method')} {head.get('url')} to the worker: {exc}") from None
        sid = self._next_id
        self._next_id += 1
        self.channel.max_stream = sid
        st = WorkerStream(self, sid, head["url"])
        self._streams[sid] = st
        self.last_active = time.monotonic()
        self.channel.send(FrameType.REQUEST, sid, frame)
        if has_body:
            self.channel.open_outbound(sid)
            st.pump = asyncio.ensure_future(self._pump(sid, body))  # type: ignore[arg-type]
        return st

    async def _pump(self, sid: int, body: bytes | AsyncIterable[bytes]) -> None:
        """Send the request body. When the body's source fails (a client that dropped its upload, an iterator
        that raised), the handler is aborted at once and the caller gets the body's own error, not a timeout."""
        try:
            if isinstance(body, (bytes, bytearray, memoryview)):
                await self.channel.send_data(sid, body)
            else:
                async for chunk in body:
                    if not isinstance(chunk, (bytes, bytearray, memoryview)):
                        raise InvalidRequest(f"a request body chunk must be bytes, got {type(chunk).__name__}")
                    if chunk:
                        await self.channel.send_data(sid, chunk)
            self.channel.end_data(sid)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the source failed (or the channel: then the worker's death is reported)
            st = self._streams.get(sid)
            if st is None or self.channel.closed:
                return
            self._abort(st)
            if not st.head.done():
                st.head.set_exception(exc)
            elif st.body is not None:
                st.body.set_exception(exc)

    def _finish(self, st: WorkerStream) -> None:
        if self._streams.pop(st.id, None) is not None:
            self.requests_served += 1
            self.last_active = time.monotonic()
        if st.pump is not None and not st.pump.done():
            st.pump.cancel()
        self.channel.close_outbound(st.id)

    def _abort(self, st: WorkerStream) -> None:
        if st.id not in self._streams:
            return
        self._finish(st)
        self.channel.close_inbound(st.id, ConnectionAbortedError("request aborted"))
        with contextlib.suppress(ConnectionError):
            self.channel.send(FrameType.ABORT, st.id)

    def _on_call(self, sid: int, msg: dict[str, Any]) -> None:
        call_id, cap, args = msg.get("id"), msg.get("cap"), msg.get("args")
        if not isinstance(call_id, int) or not isinstance(cap, str) or not isinstance(args, dict):
            raise ProtocolViolation("CALL must carry an int id, a str cap and an object args")
        if sid > self._next_id - 1:
            raise ProtocolViolation(f"CALL on stream {sid}, which was never opened")
        if len(self._calls) >= MAX_CALLS:
            raise ProtocolViolation(f"more than {MAX_CALLS} capability calls outstanding at once")
        task = asyncio.ensure_future(self._run_call(call_id, self._streams.get(sid), cap, msg))
        self._calls.add(task)  # keep a reference until it finishes (the loop holds only weak ones)
        task.add_done_callback(self._calls.discard)

    async def _run_call(self, call_id: int, st: WorkerStream | None, cap: str, msg: dict[str, Any]) -> None:
        try:
            if self.on_call is None:
                raise PermissionDenied(f"{cap}: this host has no capability broker")
            if st is None:
                raise PermissionDenied(f"{cap} was called outside a request (the request had already ended); "
                                       "capabilities can only be used while serving a request")
            reply = {"id": call_id, "ok": True, "value": await self.on_call(self, st, msg)}
        except PermissionDenied as exc:
            reply = {"id": call_id, "ok": False, "error": {"type": "PermissionDenied", "message": str(exc)}}
        except (ValueError, TypeError, KeyError) as exc:  # malformed arguments: a compromised or broken worker
            self._on_violation(ProtocolViolation(f"malformed {cap} call: {exc}"))
            return
        except Exception as exc:
            reply = {"id": call_id, "ok": False, "error": {"type": type(exc).__name__, "message": str(exc),
                                                          **({"kind": exc.kind} if hasattr(exc, "kind") else {})}}
        with contextlib.suppress(ConnectionError):
            value = reply.get("value")
            if isinstance(value, dict) and isinstance(value.get("data"), bytes):
                # A binary RESULT (issue 15, streamed fetch bodies): 0x00, JSON length (4 bytes), JSON, raw bytes;
                # the worker puts the bytes back under "data". Saves base64 both ways.
                raw = value.pop("data")
                head = encode_json(reply)
                self.channel.send(FrameType.RESULT, st.id if st is not None else 0,
                                  b"\x00" + len(head).to_bytes(4, "big") + head + raw)
                return
            self.channel.send_json(FrameType.RESULT, st.id if st is not None else 0, reply)

    def _read_file(self, ref: dict[str, Any]) -> asyncio.Future[bytes]:
        """The bytes a FILE frame names, read and verified in a thread (protoreg/worker/files.py): the executor's
        future itself, so that a block costs the loop no task of its own."""
        return asyncio.get_running_loop().run_in_executor(self.file_reader, read_verified, self.data_dir, ref,
                                                          self.label)

    def _on_frame(self, ftype: int, sid: int, payload: bytes) -> None:
        if ftype == FrameType.CALL:
            self._on_call(sid, decode_json(payload))
            return
        if sid == 0:
            if ftype == FrameType.HELLO and not self._hello.done():
                self._hello.set_result(decode_json(payload))
                return
            if ftype == FrameType.PONG:
                waiter = self._pongs.pop(payload, None)
                if waiter is None:
                    raise ProtocolViolation("PONG that answers no PING")
                if not waiter.done():
                    waiter.set_result(None)
                return
            raise ProtocolViolation(f"unexpected frame type {ftype} on the control stream")
        st = self._streams.get(sid)
        if st is None:
            if sid > self._next_id - 1 or ftype not in (FrameType.RESPONSE, FrameType.ERROR, FrameType.END):
                raise ProtocolViolation(f"frame type {ftype} for stream {sid}, which is not open")
            self.channel.charge_late(sid, FRAME_COST + len(payload))
            return  # late frame for a stream the parent aborted
        if ftype == FrameType.RESPONSE:
            if st.head.done():
                raise ProtocolViolation(f"second RESPONSE on stream {sid}")
            msg = decode_json(payload)
            status, headers = msg.get("status"), msg.get("headers")
            if not isinstance(headers, list) or not all(isinstance(h, list) and len(h) == 2 for h in headers):
                raise ProtocolViolation("RESPONSE headers are not a list of [name, value] pairs")
            problem = check_status(status) or next(
                (p for p in (check_header(n, v) for n, v in headers) if p), None)
            st.body = self.channel.open_inbound(sid)
            if self.data_dir is not None:
                st.body.resolve = self._read_file
            if problem:  # the worker-side check was bypassed: refuse the response, keep the worker
                self._abort(st)
                st.head.set_exception(HandlerError(f"handler for {self.label} sent an invalid response: {problem}",
                                                   status=502, extension=self.label))
                return
            st.head.set_result((status, [(n, v) for n, v in headers]))  # type: ignore[misc]
        elif ftype == FrameType.END:
            self._finish(st)
        elif ftype == FrameType.ERROR:
            msg = decode_json(payload)
            status = msg.get("status") if msg.get("status") in (500, 502, 504) else 502
            err = HandlerError(printable(str(msg.get("message", "handler failed"))[:4096]), status=status,
                               extension=self.label)
            self._finish(st)
            self.channel.close_inbound(sid, err)
            if not st.head.done():
                st.head.set_exception(err)
            elif st.body is not None:
                st.body.set_exception(err)
        else:
            raise ProtocolViolation(f"unexpected frame type {ftype} from a worker")

