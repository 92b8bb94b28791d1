"""protoreg/worker/files.py: the parent reads a FILE frame's file only inside the data dir, never through a link,
and passes nothing on unless the whole file has the sha256 the worker named."""

from __future__ import annotations

import hashlib
import os

import pytest

from protoreg import HandlerError
from protoreg.ipc import MAX_FILE
from protoreg.worker.files import read_verified


def ref(path: str, data: bytes, offset: int = 0, length: int | None = None) -> dict:
    return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "offset": offset,
            "length": len(data) - offset if length is None else length}


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "blocks" / "ab").mkdir(parents=True)
    return root


def test_a_slice_of_a_verified_file(data_dir):
    blob = os.urandom(300_000)
    (data_dir / "blocks" / "ab" / "x").write_bytes(blob)
    assert read_verified(data_dir, ref("blocks/ab/x", blob)) == blob
    assert read_verified(data_dir, ref("blocks/ab/x", blob, 10, 20)) == blob[10:30]


def test_a_changed_or_corrupt_file_is_never_passed_on(data_dir):
    blob = os.urandom(1000)
    (data_dir / "f").write_bytes(blob)
    wanted = ref("f", blob)
    (data_dir / "f").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(HandlerError, match="does not have the sha256") as info:
        read_verified(data_dir, wanted)
    assert info.value.status == 502


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "a/../../secret", "./f", "a//f", ""])
def test_paths_that_leave_or_bend_are_refused(data_dir, path):
    (data_dir.parent / "secret").write_bytes(b"host secret")
    with pytest.raises(HandlerError, match="plain relative path|can't be opened"):
        read_verified(data_dir, {**ref("x", b"host secret"), "path": path})


def test_a_symlink_anywhere_on_the_way_is_not_followed(data_dir):
    secret = data_dir.parent / "secret"
    secret.write_bytes(b"host secret")
    (data_dir / "link").symlink_to(secret)
    (data_dir / "dirlink").symlink_to(data_dir.parent, target_is_directory=True)
    for path in ("link", "dirlink/secret"):
        with pytest.raises(HandlerError, match="can't be opened without following a link"):
            read_verified(data_dir, {**ref("x", b"host secret"), "path": path})


def test_only_regular_files_up_to_the_limit(data_dir):
    (data_dir / "d").mkdir()
    with pytest.raises(HandlerError):
        read_verified(data_dir, {**ref("x", b""), "path": "d", "length": 1})
    big = os.urandom(MAX_FILE + 1)
    (data_dir / "big").write_bytes(big)
    with pytest.raises(HandlerError, match="at most"):
        read_verified(data_dir, ref("big", big, 0, 10))
    os.mkfifo(data_dir / "fifo")  # opened non-blocking, then refused: never a hang
    with pytest.raises(HandlerError):
        read_verified(data_dir, {**ref("x", b""), "path": "fifo", "length": 1})


def test_a_slice_past_the_end_is_refused(data_dir):
    blob = b"0123456789"
    (data_dir / "f").write_bytes(blob)
    with pytest.raises(HandlerError, match="holds 10"):
        read_verified(data_dir, ref("f", blob, 5, 10))


SLICER = """
import hashlib
from protoreg import FileSlice, Response, runtime
async def handleRequest(request):
    (runtime.data_dir() / "f").write_bytes(b"0123456789")
    good = hashlib.sha256(b"0123456789").hexdigest()
    kind = request.url.path.strip("/")
    piece = {"ok": FileSlice("f", good, 2, 3), "tail": FileSlice("f", good, 7),
             "past": FileSlice("f", good, 5, 10), "hash": FileSlice("f", "xyz"), "offset": FileSlice("f", good, "1"),
             "missing": FileSlice("nope", good), "abs": FileSlice("/etc/passwd", good)}[kind]
    async def body():
        yield b"["
        yield piece
        yield b"]"
    return Response(body())
"""


@pytest.mark.parametrize(("kind", "expected"), [
    ("ok", b"[234]"), ("tail", b"[789]"),
    ("past", "the file holds 10 bytes"), ("hash", "hex sha256"), ("offset", "integers >= 0"),
    ("missing", "No such file"), ("abs", "relative path inside it"),
])
async def test_file_slices_from_a_handler(tmp_path, kind, expected):
    import protoreg
    from protoreg.testing import write_extension

    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "s", scheme="web+s", ext_id="s@test", script=SLICER,
                                permissions=["storage"]))
    async with protoreg.Session(reg) as session:
        resp = await session.fetch(f"web+s://x/{kind}")
        if isinstance(expected, bytes):
            assert await resp.read() == expected
        else:
            with pytest.raises(HandlerError, match=expected):
                await resp.read()
