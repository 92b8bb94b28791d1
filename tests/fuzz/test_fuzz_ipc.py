"""Fuzz target: frames a compromised worker sends to the parent. Whatever the bytes, the parent's strict channel and
WorkerProcess either accept them or report a ProtocolViolation (and kill the worker); no other exception escapes,
and nothing the worker sends grows the parent's state past its bounds."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.ipc import HEADER, FrameType
from protoreg.worker.config import WorkerConfig
from protoreg.worker.process import WorkerProcess

EXAMPLES = int(os.environ.get("PROTOREG_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, data) -> None:  # type: ignore[override]
        for d in data:
            self.write(bytes(d))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.aborted


class FakeProc:
    pid = 999999
    returncode = None

    def kill(self) -> None:
        self.returncode = -9


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                       max_leaves=12)
PAYLOAD = st.one_of(st.binary(max_size=64), JSONISH.map(lambda v: json.dumps(v).encode()),
                    st.fixed_dictionaries({"status": st.integers(0, 700), "headers": JSONISH}).map(
                        lambda v: json.dumps(v).encode()),
                    st.fixed_dictionaries({"id": st.integers(-2, 2**40), "cap": st.text(max_size=12),
                                           "args": JSONISH}).map(lambda v: json.dumps(v).encode()),
                    st.fixed_dictionaries({  # FILE references (protoreg/worker/files.py)
                        "path": st.sampled_from(["f", "../f", "/etc/passwd", "a/b", ""]),
                        "sha256": st.sampled_from(["0" * 64, "x", "A" * 64]),
                        "offset": st.integers(-1, 2**21), "length": st.integers(-1, 2**21)}).map(
                        lambda v: json.dumps(v).encode()))
FRAME = st.tuples(st.sampled_from([*list(FrameType), 0, 99, 255]), st.integers(0, 6), PAYLOAD)


DATA_DIR = tempfile.mkdtemp(prefix="protoreg-fuzz-ipc-")


def _encode(frames) -> bytes:
    return b"".join(HEADER.pack(int(t), 0, sid, len(p)) + p for t, sid, p in frames)


@FUZZ
@given(st.lists(FRAME, max_size=20), st.integers(1, 64), st.binary(max_size=40))
def test_worker_frames_are_accepted_or_a_protocol_violation(frames, split, tail):
    async def run() -> tuple[WorkerProcess, FakeTransport]:
        from protoreg.ipc import Channel

        holder: list[WorkerProcess] = []
        channel = Channel(lambda t, s, p: holder[0]._on_frame(t, s, p), lambda exc: None, window=4096,
                          strict=True, on_violation=lambda v: holder[0]._on_violation(v))
        transport = FakeTransport()
        channel.connection_made(transport)
        worker = WorkerProcess(FakeProc(), channel, WorkerConfig())  # type: ignore[arg-type]
        worker.data_dir = DATA_DIR  # FILE frames are read from here (an empty dir: every read fails cleanly)
        holder.append(worker)
        for _ in range(3):  # three streams the parent opened, two with a request body
            worker.request({"method": "GET", "url": "web+x://h/", "headers": []}, None)
        data = _encode(frames) + tail
        for i in range(0, len(data), split):  # arbitrary read boundaries
            if transport.aborted:
                break
            channel.data_received(data[i:i + split])
        await asyncio.sleep(0)
        for task in list(worker._calls):
            task.cancel()
        await asyncio.gather(*worker._calls, return_exceptions=True)
        return worker, transport

    worker, transport = asyncio.run(run())
    if transport.aborted:  # a violation: the worker is killed with the reason recorded
        assert worker.violation and worker.proc.returncode == -9
    assert len(worker._streams) <= 3 and len(worker._calls) == 0


def test_a_frame_over_the_size_limit_is_a_violation_before_its_payload_arrives():
    async def run() -> WorkerProcess:
        from protoreg.ipc import Channel

        holder: list[WorkerProcess] = []
        channel = Channel(lambda t, s, p: None, lambda exc: None, strict=True,
                          on_violation=lambda v: holder[0]._on_violation(v))
        channel.connection_made(FakeTransport())
        worker = WorkerProcess(FakeProc(), channel, WorkerConfig())  # type: ignore[arg-type]
        holder.append(worker)
        channel.data_received(struct.pack("!BBII", FrameType.DATA, 0, 1, 1 << 30))
        return worker

    assert "exceeds" in (asyncio.run(run()).violation or "")
