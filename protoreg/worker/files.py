"""Body bytes by reference (FILE frames, protoreg/ipc.py): the parent reads a file of the worker's data dir, checks
the sha256 the worker named over the whole file, and only then passes on the slice asked for.

The worker writes its data dir and may race the parent (swap a directory for a symlink between two steps), so the
file is opened one component at a time relative to the data dir's descriptor, never following a symlink
(``O_NOFOLLOW`` on every step), and must be a regular file of at most ``MAX_FILE`` bytes. What it may name is
therefore exactly what it could read itself; the hash check means a corrupt or swapped file is never sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any

from protoreg.errors import HandlerError
from protoreg.ipc import MAX_FILE

__all__ = ["plain_relative", "read_verified"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def plain_relative(path: object) -> bool:
    """Whether ``path`` is a relative path with no empty, ``.`` or ``..`` component (what a FileSlice may name;
    checked by the worker for a clear error, and again by the parent, which trusts nothing the worker sends)."""
    return isinstance(path, str) and not path.startswith("/") and all(
        p not in ("", ".", "..") and "\0" not in p for p in path.split("/"))


def read_verified(root: str | Path, ref: dict[str, Any], extension: str | None = None) -> bytes:
    """The bytes ``ref`` names (``path`` relative to ``root``, ``sha256`` of the whole file, ``offset``,
    ``length``); raises HandlerError (502, naming ``extension``) saying what was wrong. Blocking: the caller runs
    it in a thread."""
    label = f"handler for {extension}" if extension else "the handler"
    path = ref["path"]
    parts = path.split("/")
    if not plain_relative(path):
        raise HandlerError(f"{label} named the file {path!r}: a body file must be a plain relative path inside its "
                           "data dir (no '..', no leading '/')", status=502, extension=extension)
    fds: list[int] = []
    try:
        fds.append(os.open(root, _DIR_FLAGS))
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1])
    except OSError as exc:
        raise HandlerError(f"{label} named the body file {path!r} in its data dir, which can't be opened without "
                           f"following a link ({exc.strerror})", status=502, extension=extension) from None
    finally:
        for d in fds:
            os.close(d)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            raise HandlerError(f"{label} named {path!r} as a body file: it is not a regular file of at most "
                               f"{MAX_FILE} bytes", status=502, extension=extension)
        data = b""
        while len(data) < st.st_size:  # a file that changes size while read is caught by the hash
            piece = os.read(fd, st.st_size - len(data) + 1)
            if not piece:
                break
            data += piece
    finally:
        os.close(fd)
    if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), ref["sha256"]):
        raise HandlerError(f"{label}'s body file {path!r} does not have the sha256 it named (the file is corrupt, or "
                           "changed after it was named); nothing of it was sent", status=502, extension=extension)
    offset, length = ref["offset"], ref["length"]
    if offset + length > len(data):
        raise HandlerError(f"{label} asked for bytes {offset}-{offset + length} of {path!r}, which holds "
                           f"{len(data)}", status=502, extension=extension)
    return data if offset == 0 and length == len(data) else data[offset:offset + length]
