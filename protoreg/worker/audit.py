"""Explain sandbox denials in words, in the host's log (a helper only: the OS layers are the boundary).

A Python audit hook in the worker sees a handler's open(), connect(), fork and exec attempts before the OS refuses
them, and writes one line to stderr saying what was tried, why it is refused, and what to do instead. The parent
forwards worker stderr to logging, tagged with the extension.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

_SEEN_LIMIT = 200


def _import_probe(path: str) -> bool:
    """Is ``path`` an entry of sys.path? Every import that misses lists them (an editable install or a
    PYTHONPATH puts directories there that the sandbox does not open), and the denial is harmless."""
    full = os.path.abspath(path or ".")
    return any(isinstance(entry, str) and os.path.abspath(entry or ".") == full for entry in sys.path)


def install(label: str, read_paths: Sequence[str], write_paths: Sequence[str]) -> None:
    reads = tuple(p.rstrip("/") + "/" for p in read_paths)
    writes = tuple(p.rstrip("/") + "/" for p in write_paths)
    seen: set[str] = set()
    who = f"protoreg sandbox: handler of {label}"

    def say(key: str, message: str) -> None:
        if key in seen or len(seen) > _SEEN_LIMIT:
            return
        seen.add(key)
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: S110 - a broken stderr must not break the handler
            pass

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.listdir", "os.scandir"):
            path, mode, flags = (*args, None, None, 0)[:3] if event == "open" else (args[0], "r", 0)
            if not isinstance(path, (str, bytes)):
                return
            text = os.fsdecode(path)
            if event != "open" and _import_probe(text):
                return  # the import system listing a sys.path entry: not the handler's doing, nothing to explain
            full = os.path.abspath(text) + ("/" if not text.endswith("/") else "")
            writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) if isinstance(flags, int) else \
                any(c in str(mode or "") for c in "wax+")
            allowed = full.startswith(writes) if writing else full.startswith(reads + writes)
            if not allowed:
                kind = "write" if writing else "read"
                hint = ("Write only under protoreg.runtime.data_dir (granted with the 'storage' permission)"
                        if writing else "Keep the files the handler needs inside its extension bundle")
                say(f"open:{kind}:{text}", f"{who} tried to {kind} {text}: outside its extension bundle, data "
                                           f"directory and the Python installation, so the sandbox denies it. {hint}.")
        elif event == "socket.connect":
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) != 1:  # not AF_UNIX
                say(f"connect:{address}", f"{who} tried to connect to {address}: handlers have no network access. "
                                         "Use protoreg.runtime.fetch(url) for hosts listed in the manifest's "
                                         "host_permissions.")
        elif event in ("socket.bind",):
            say(f"bind:{args[1]}", f"{who} tried to bind {args[1]}: handlers can't listen on the network.")
        elif event in ("os.fork", "os.exec", "os.posix_spawn", "subprocess.Popen", "os.system"):
            say(f"proc:{event}", f"{who} tried {event}: handlers can't start processes. Do the work in Python "
                                 "inside the handler, or in the embedding app.")
        elif event == "os.kill":
            say(f"kill:{args[0]}", f"{who} tried to signal pid {args[0]}: handlers can't signal other processes.")

    sys.addaudithook(hook)
