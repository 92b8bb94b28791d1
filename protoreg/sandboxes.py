"""Named sandboxes: privilege separation inside one extension (parent side).

A manifest's ``sandboxes`` entry is a script with its own grants that runs in a worker process of its own (under the
same OS sandbox as handlers). Handlers reach it only by JSON messages, ``runtime.sandbox(name).call(message,
payload)``: the worker sends a ``sandbox.call`` CALL frame, the parent (``deliver`` below) checks that the caller is
a handler worker of the extension that declares the sandbox, and sends the message as a request on a scheme nothing
can claim (``protoreg-sbx://<sandbox>/<message>``) to the sandbox's pool, whose worker runs
``handleMessage(name, payload)``.

Each sandbox is presented to the broker, the permission manager and the audit log as an extension of its own whose
id is ``<extension id>#<sandbox>`` (:func:`sandbox_extension`), with only the sandbox's grants: the broker
identifies a caller by its channel (which worker = which extension and which sandbox), never from the message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from protoreg.errors import HandlerError, MessageError, PermissionDenied, WorkerCrashed

if TYPE_CHECKING:
    from protoreg.registry import Extension
    from protoreg.worker.manager import WorkerManager
    from protoreg.worker.process import WorkerProcess

__all__ = ["MAX_MESSAGE", "MAX_REPLY", "MESSAGE_TIMEOUT", "SANDBOX_SCHEME", "deliver", "lookup", "sandbox_extension",
           "sandbox_id", "with_sandboxes"]

#: The scheme of message requests to a sandbox worker (not claimable: protoreg-* is reserved, and not a web scheme).
SANDBOX_SCHEME = "protoreg-sbx"
#: Largest JSON message (payload) and reply, in bytes of UTF-8 JSON: under the IPC limit of one control frame
#: (the CALL that carries it), checked in the calling worker first so an oversized message never costs it its life.
MAX_MESSAGE = 192 * 1024
#: Largest JSON reply of a sandbox, in bytes (replies travel parent → worker, where frames may be larger).
MAX_REPLY = 16 * 1024 * 1024
#: Default seconds a message may take (the caller may ask for less, never for more than the request timeout).
MESSAGE_TIMEOUT = 30.0
_watchdogs: set[asyncio.Task[bool]] = set()
_MESSAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def sandbox_id(ext_id: str, name: str) -> str:
    """``ext@x#net``: how a sandbox is named in the audit log, permission decisions, the dashboard and stats."""
    return f"{ext_id}#{name}"


def sandbox_extension(ext: Extension, name: str) -> Extension:
    """The extension as the sandbox ``name`` sees it: id ``<ext>#<name>``, and a manifest whose permissions and
    host_permissions are the sandbox's own (no protocol handlers, no sandboxes). Effective grants: when a profile
    set the extension's grants (``requested ∩ ceiling``, where requested includes every sandbox's requests), the
    sandbox gets its own requests within those; otherwise what it requests."""
    spec = ext.manifest.sandboxes.get(name)
    if spec is None:
        raise MessageError(f"{ext.id} declares no sandbox {name!r} in manifest.json", "undeclared")
    manifest = ext.manifest.model_copy(update={"permissions": list(spec.permissions),
                                               "host_permissions": list(spec.host_permissions),
                                               "sandboxes": {}, "commands": {}})
    perms = hosts = None
    if ext.granted_permissions is not None or ext.granted_hosts is not None:
        perms = frozenset(p for p in spec.permissions if p in (ext.granted_permissions or ()))
        hosts = tuple(p for p in spec.granted_hosts if p in (ext.granted_hosts or ()))
    return dataclasses.replace(ext, id=sandbox_id(ext.id, name), manifest=manifest,
                               granted_permissions=perms, granted_hosts=hosts)


def with_sandboxes(extensions: Iterable[Extension]) -> Iterator[Extension]:
    """Each extension followed by each of its named sandboxes (as :func:`sandbox_extension`): every grantee the
    permission manager, the dashboard and the audit log know."""
    for ext in extensions:
        yield ext
        for name in getattr(ext.manifest, "sandboxes", None) or {}:
            yield sandbox_extension(ext, name)


def lookup(extensions: Mapping[str, Extension], grantee_id: str) -> Extension | None:
    """The extension, or the named sandbox (``ext@x#net``), with that id; None if there is none."""
    ext_id, _, name = grantee_id.partition("#")
    ext = extensions.get(ext_id)
    if ext is None or not name:
        return ext
    return sandbox_extension(ext, name) if name in (getattr(ext.manifest, "sandboxes", None) or {}) else None


def _encode(value: Any, what: str) -> bytes:
    try:
        raw = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise MessageError(f"the {what} is not a JSON value: {exc}", "not_json") from None
    if len(raw) > MAX_MESSAGE:
        raise MessageError(f"the {what} is {len(raw)} bytes of JSON, over the {MAX_MESSAGE}-byte limit of "
                           "sandbox messages; send less, or let the sandbox store it and pass a key", "too_large")
    return raw


async def deliver(workers: WorkerManager, caller: WorkerProcess, ext: Extension, origin: str,
                  args: dict[str, Any], *, max_timeout: float) -> Any:
    """Run ``runtime.sandbox(name).call(message, payload)`` for a handler worker of ``ext`` serving ``origin``."""
    name, message = args.get("sandbox"), args.get("message")
    if not isinstance(name, str) or not isinstance(message, str):
        raise TypeError("sandbox.call needs str sandbox and message")
    if getattr(caller, "sandbox", None) is not None:
        raise PermissionDenied(f"sandbox {sandbox_id(ext.id, caller.sandbox)} tried to message sandbox {name!r}: "
                               "only the extension's handlers may message its sandboxes")
    if name not in ext.manifest.sandboxes:
        declared = ", ".join(sorted(ext.manifest.sandboxes)) or "none"
        raise MessageError(f"unknown sandbox {name!r}: {ext.id} declares no such sandbox in manifest.json "
                           f'(declared: {declared}). Add it under "sandboxes"', "undeclared")
    if not _MESSAGE_NAME.match(message):
        raise MessageError(f"message name {message[:80]!r} must be 1-64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or '_'", "unknown_message")
    body = _encode(args.get("payload"), "payload")
    timeout = args.get("timeout")
    timeout = max_timeout if not isinstance(timeout, (int, float)) or timeout <= 0 else min(timeout, max_timeout)
    target = sandbox_id(ext.id, name)
    head = {"method": "POST", "url": f"{SANDBOX_SCHEME}://{name}/{message}",
            "headers": [("content-type", "application/json")], "origin": origin}
    try:
        stream = await workers.dispatch_sandbox(ext, name, head, body, origin)
    except WorkerCrashed as exc:
        raise MessageError(f"sandbox {target} crashed: {exc}", "crashed") from None
    except HandlerError as exc:
        raise MessageError(f"sandbox {target} could not start: {exc}", "crashed") from None

    async def answer() -> bytes:
        await stream.head
        assert stream.body is not None
        chunks: list[bytes] = []
        size = 0
        async for chunk in stream.body:
            size += len(chunk)
            if size > MAX_REPLY:
                stream.abort()
                raise MessageError(f"the reply of sandbox {target} to {message!r} is over the {MAX_REPLY}-byte "
                                   "limit of sandbox messages", "too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        raw = await asyncio.wait_for(answer(), timeout)
    except TimeoutError:
        stream.abort()
        watchdog = asyncio.ensure_future(stream.worker.ensure_responsive(workers.config.liveness_timeout))
        _watchdogs.add(watchdog)
        watchdog.add_done_callback(_watchdogs.discard)
        raise MessageError(f"sandbox {target} did not answer {message!r} within {timeout:g}s", "timeout") from None
    except WorkerCrashed as exc:
        raise MessageError(f"sandbox {target} crashed while handling {message!r}: {exc}", "crashed") from None
    except HandlerError as exc:  # load error (no handleMessage), or a fault of the sandbox worker
        raise MessageError(f"sandbox {target} failed: {exc}", "failed") from None
    except asyncio.CancelledError:
        stream.abort()
        raise
    try:  # the sandbox worker is not trusted either: a malformed reply is its fault, not the caller's
        reply = json.loads(raw)
        if not isinstance(reply, dict):
            raise ValueError("not an object")
    except ValueError:
        raise MessageError(f"sandbox {target} sent a malformed reply to {message!r}", "failed") from None
    if reply.get("ok"):
        return reply.get("value")
    err = reply.get("error") or {}
    raise MessageError(str(err.get("message", "the sandbox failed"))[:4096], str(err.get("kind", "failed")))
