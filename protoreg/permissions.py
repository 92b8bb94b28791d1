"""The permission manager: a decision per (extension, permission), prompts, revocation.

A capability call is allowed only if the extension's effective grants allow it (``requested ∩ store ceilings``,
see docs/trust.md) **and** the decision for that permission is ``allow`` (or ``prompt``, answered allow). A
decision has a state (allow, prompt, deny), a source (store, user, default) and an expiry (never, the session, or
a time). Without a recorded decision the default applies: ``allow`` for what the stores granted (source "store";
"default" for unsigned development extensions), ``deny`` for everything else. A user decision can never exceed the
ceiling: allowing (or asking for) a permission that is not granted is refused with the store that clipped it.

Decisions live in ``<profile>/decisions.json`` (read again whenever it changes, so a revoke made by ``protoreg
grants`` or the dashboard reaches a running worker at its next call); ``session`` decisions end when the
:class:`~protoreg.Session` that uses the profile closes. Prompts reach the embedding app through
``Session(on_prompt=...)``: identical concurrent prompts are coalesced into one, and a prompt nobody answers
within ``prompt_timeout`` seconds is a denial.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import secrets
import shlex
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from protoreg.errors import PermissionDenied, ProtoregError

__all__ = ["Decision", "DecisionError", "Grantee", "PermissionManager", "PromptAnswer", "PromptRequest",
           "describe_expiry", "parse_expires", "span_seconds", "wait_for_dashboard"]

log = logging.getLogger("protoreg.permissions")

State = Literal["allow", "prompt", "deny"]
Source = Literal["store", "user", "default"]
#: None: never expires; "session": ends with the Session; a float: Unix time it ends.
Expiry = None | str | float
STATES: tuple[str, ...] = ("allow", "prompt", "deny")
PROMPT_TIMEOUT = 60.0


class DecisionError(ProtoregError, ValueError):
    """A decision that can't be made: unknown permission, beyond the store ceiling, bad expiry."""


# -- expiry --------------------------------------------------------------------------------------------------------
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def span_seconds(text: str) -> float | None:
    """A relative span (``30m``, ``1h``, ``2d``, ``1h30m``; units s m h d w) in seconds, or None."""
    text = text.strip().lower()
    if not text or _RELATIVE.sub("", text).strip():
        return None
    return float(sum(int(n) * _UNIT[u] for n, u in _RELATIVE.findall(text)))


def parse_expires(value: str | float | datetime | None, *, now: float | None = None) -> Expiry:
    """``never``/None, ``session``, an ISO 8601 time (no zone: local time), a relative span (``30m``, ``1h``,
    ``2d``, ``1h30m``), a Unix time (float) or a datetime -> the stored expiry."""
    now = time.time() if now is None else now
    if value is None or value == "never":
        return None
    if value == "session":
        return "session"
    if isinstance(value, datetime):
        when = value.timestamp()
    elif isinstance(value, (int, float)):
        when = float(value)
    else:
        span = span_seconds(str(value))
        if span is not None:
            when = now + span
        else:
            try:
                when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise DecisionError(f"the expiry {value!r} is not understood: use never, session, a time in ISO "
                                    "8601 (2026-12-31T18:00, 2026-12-31T18:00Z) or a span such as 30m, 1h, 2d, "
                                    "1h30m") from None
    if when <= now:
        raise DecisionError(f"the expiry {value!r} is in the past ({_fmt_time(when)}); give a later time")
    return when


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_expiry(expires: Expiry) -> str:
    if expires is None:
        return "never expires"
    if expires == "session" or isinstance(expires, str):
        return "until this session ends"
    return f"until {_fmt_time(float(expires))}"


# -- data ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    permission: str
    state: State
    source: Source
    expires: Expiry = None
    set_at: float | None = None
    #: Why (for store and default decisions: the grant or the clipping).
    note: str = ""

    def describe(self) -> str:
        by = {"store": "by the store", "user": "by the user", "default": "by default"}[self.source]
        extra = f" ({self.note})" if self.note else ""
        return f"{self.state} {by}, {describe_expiry(self.expires)}{extra}"

    def to_json(self) -> dict[str, Any]:
        return {"permission": self.permission, "state": self.state, "source": self.source,
                "expires": self.expires, "set_at": self.set_at, "note": self.note,
                "description": self.describe()}


@dataclass(frozen=True)
class Grantee:
    """What the manager needs to know of an extension: its id, what it requested and what the stores granted."""

    id: str
    requested: tuple[str, ...]
    granted: tuple[str, ...]
    signed: bool = False
    clipped: tuple[tuple[str, str], ...] = ()     # (permission, by which store)

    @classmethod
    def of(cls, ext: Any) -> Grantee:
        """From a :class:`~protoreg.registry.Extension` (effective grants if a profile set them, else its
        manifest's requests)."""
        if isinstance(ext, Grantee):
            return ext
        manifest = ext.manifest
        requested = tuple(dict.fromkeys([*manifest.permissions, *manifest.host_permissions]))
        perms, hosts = getattr(ext, "granted_permissions", None), getattr(ext, "granted_hosts", None)
        if perms is None and hosts is None:  # as the broker's Grants.from_extension reads the manifest
            apis = [p for p in manifest.permissions if "://" not in p and p != "<all_urls>"]
            granted = tuple(dict.fromkeys([*apis, *manifest.granted_hosts]))
        else:
            granted = (*sorted(perms or ()), *(hosts or ()))
            if getattr(manifest, "sandboxes", None):  # a named sandbox's grants are its own (protoreg/sandboxes.py)
                granted = tuple(p for p in granted if p in requested or p in manifest.granted_hosts)
        provenance = getattr(ext, "provenance", "")
        return cls(ext.id, requested, granted, signed=bool(provenance) and provenance.startswith("store"))

    @classmethod
    def from_record(cls, ext_id: str, rec: dict[str, Any]) -> Grantee:
        """From a profile's installed.json record."""
        return cls(ext_id, tuple(rec.get("requested", ())), tuple(rec.get("granted", ())), bool(rec.get("signed")),
                   tuple((c["permission"], c["by"]) for c in rec.get("clipped", ())))


@dataclass
class PromptRequest:
    """A question for the user: may ``extension`` use ``permission`` (e.g. to ``capability`` ``target``)?"""

    id: str
    extension: str
    permission: str
    capability: str
    target: str
    origin: str
    created: float
    timeout: float
    #: How many calls are waiting for this answer (identical concurrent prompts are coalesced).
    waiting: int = 1

    def describe(self) -> str:
        return (f"{self.extension} asks to use {self.permission} ({self.capability} {self.target}, for a page of "
                f"{self.origin})")


@dataclass(frozen=True)
class PromptAnswer:
    """An answer to a prompt; ``expires`` other than ``"once"`` remembers it as a user decision."""

    decision: Literal["allow", "deny"]
    expires: str | float | datetime | None = "once"


PromptCallback = Callable[[PromptRequest], Awaitable[Any]]


async def wait_for_dashboard(request: PromptRequest) -> Any:
    """An ``on_prompt`` that leaves the answer to :meth:`PermissionManager.answer` (the dashboard of
    ``protoreg serve``): it waits until answered or the prompt times out."""
    await asyncio.Event().wait()


@dataclass
class _Pending:
    request: PromptRequest
    future: asyncio.Future[tuple[str, Expiry | str, str]]
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- the manager ---------------------------------------------------------------------------------------------------
_session_ids = itertools.count(1)


class PermissionManager:
    """Decisions of one profile (``path``: its directory; None: in memory only) as seen by one Session.

    Thread-safe for readers; changes take the profile's lock (``<profile>/.lock``)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, on_prompt: PromptCallback | None = None,
                 prompt_timeout: float = PROMPT_TIMEOUT, how_to_decide: str | None = None,
                 session: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.on_prompt = on_prompt
        self.prompt_timeout = prompt_timeout
        #: Identifies the session-scoped decisions of this manager's Session in the file ("pid:n:random"); None
        #: for a manager outside any Session (the CLI): its "session" decisions end when the next Session closes.
        self.session_id = f"{os.getpid()}:{next(_session_ids)}:{secrets.token_hex(4)}" if session else None
        self._memory: dict[str, dict[str, dict[str, Any]]] = {}
        self._cache: tuple[tuple[int, int, int], dict[str, dict[str, dict[str, Any]]]] | None = None
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._listeners: list[Callable[[str, Any], None]] = []
        self.how_to_decide = how_to_decide

    def __repr__(self) -> str:
        return f"<PermissionManager {self.path or 'in memory'}>"

    # -- storage -------------------------------------------------------------------------------------------------
    @property
    def _file(self) -> Path | None:
        return self.path / "decisions.json" if self.path is not None else None

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        file = self._file
        if file is None:
            return self._memory
        try:
            st = file.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            log.error("the decisions file %s can't be read (%s): every permission falls back to its default",
                      file, exc)
            data = {}
        data = data if isinstance(data, dict) else {}
        self._cache = (key, data)
        return data

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
        if self._file is None:
            yield self._memory
            self._notify("decisions", None)
            return
        assert self.path is not None
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._cache = None
            data = json.loads(json.dumps(self._load()))  # a private copy
            yield data
            tmp = self.path / ".decisions.json.tmp"
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.chmod(tmp, 0o600)
            tmp.replace(self._file)  # a new inode: every reader sees the change at its next call
            self._cache = None
        finally:
            os.close(fd)
        self._notify("decisions", None)

    def subscribe(self, listener: Callable[[str, Any], None]) -> Callable[[], None]:
        """``listener(event, data)`` on "decisions" changes and "prompt"/"answered" events."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, data: Any) -> None:
        for fn in list(self._listeners):
            try:
                fn(event, data)
            except Exception:  # a listener never breaks a decision
                log.exception("permission listener failed")

    @staticmethod
    def _alive(session: str | None) -> bool:
        if not session:
            return True  # set from the CLI: ends when a Session using the profile closes
        try:
            os.kill(int(session.split(":", 1)[0]), 0)
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def _stored(self, ext_id: str, permission: str, now: float | None = None) -> Decision | None:
        rec = self._load().get(ext_id, {}).get(permission)
        if not rec:
            return None
        now = time.time() if now is None else now
        expires = rec.get("expires")
        if isinstance(expires, (int, float)) and expires <= now:
            return None
        if expires == "session":
            owner = rec.get("session")
            if owner and owner != self.session_id and not self._alive(owner):
                return None
        return Decision(permission, rec["state"], rec.get("source", "user"), expires, rec.get("set_at"))

    # -- queries -------------------------------------------------------------------------------------------------
    @staticmethod
    def default(grantee: Grantee, permission: str) -> Decision:
        if permission in grantee.granted:
            if grantee.signed:
                return Decision(permission, "allow", "store", note="granted by the store")
            return Decision(permission, "allow", "default", note="requested by an unsigned development extension")
        by = dict(grantee.clipped).get(permission)
        if by is not None:
            return Decision(permission, "deny", "store", note=f"not within the ceiling of {by}")
        if permission in grantee.requested:
            return Decision(permission, "deny", "store", note="not granted by the store")
        return Decision(permission, "deny", "default", note="not requested")

    def decision(self, ext: Any, permission: str) -> Decision:
        """The decision in force for ``permission`` of ``ext`` (an Extension or a :class:`Grantee`)."""
        grantee = Grantee.of(ext)
        stored = self._stored(grantee.id, permission)
        if stored is None:
            return self.default(grantee, permission)
        if permission not in grantee.granted:  # the ceiling always wins over a user decision
            return self.default(grantee, permission)
        return stored

    def decisions(self, ext: Any) -> dict[str, Decision]:
        """Every permission the extension requested (and any with a stored decision) -> its decision."""
        grantee = Grantee.of(ext)
        perms = list(dict.fromkeys([*grantee.requested, *grantee.granted,
                                    *self._load().get(grantee.id, {}).keys()]))
        return {p: self.decision(grantee, p) for p in perms}

    # -- changes -------------------------------------------------------------------------------------------------
    def decide(self, ext: Any, permission: str, state: str, *, expires: str | float | datetime | None = None,
               source: Source = "user") -> Decision:
        """Record a decision. Allowing or prompting for a permission the stores did not grant is refused (a
        user decision never exceeds the ceiling); denying any requested permission is fine."""
        grantee = Grantee.of(ext)
        if state not in STATES:
            raise DecisionError(f"the decision must be one of {', '.join(STATES)}, not {state!r}")
        if permission not in grantee.requested and permission not in grantee.granted:
            asked = ", ".join(grantee.requested) or "nothing"
            raise DecisionError(f"{grantee.id} does not request {permission!r} (it requests: {asked}); decisions "
                                "apply to requested permissions and host match patterns, spelled as in its manifest")
        if state != "deny" and permission not in grantee.granted:
            why = self.default(grantee, permission).note
            raise DecisionError(f"{permission} can't be set to {state} for {grantee.id}: it is {why}, and a "
                                "user decision can never exceed the store ceiling. Ask the store (or the "
                                "parent store of the role that signed it) to allow it")
        when = parse_expires(expires)
        rec: dict[str, Any] = {"state": state, "source": source, "expires": when, "set_at": round(time.time(), 3)}
        if when == "session" and self.session_id is not None:
            rec["session"] = self.session_id
        with self._changing() as data:
            data.setdefault(grantee.id, {})[permission] = rec
        self._forget_pending_answers(grantee.id, permission)
        log.info("%s %s: %s (%s)", grantee.id, permission, state, describe_expiry(when))
        return Decision(permission, state, source, when, rec["set_at"])  # type: ignore[arg-type]

    def revoke(self, ext: Any, permission: str) -> Decision:
        """Withdraw ``permission``: it is denied (never expires) until the user decides otherwise, replacing any
        allow, including answers remembered from prompts. Takes effect at the extension's next call."""
        return self.decide(ext, permission, "deny", expires=None)

    def reset(self, ext: Any, permission: str | None = None) -> None:
        """Forget the user's decision(s): the default applies again."""
        grantee = Grantee.of(ext)
        with self._changing() as data:
            if permission is None:
                data.pop(grantee.id, None)
            else:
                data.get(grantee.id, {}).pop(permission, None)

    def forget(self, ext_id: str) -> None:
        """An uninstalled extension's decisions go with it."""
        self.reset(Grantee(ext_id, (), ()))

    def close(self) -> None:
        """The session ended: its ``session`` decisions end (and those set with ``--expires session`` from the CLI,
        or left by a session that died); pending prompts are denied."""
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_result(("deny", "once", "the session closed before the prompt was answered"))
        data = self._load()
        if not any(r.get("expires") == "session" for perms in data.values() for r in perms.values()):
            return
        with self._changing() as data:
            for perms in data.values():
                for perm, rec in list(perms.items()):
                    owner = rec.get("session")
                    if rec.get("expires") == "session" and (not owner or owner == self.session_id
                                                            or not self._alive(owner)):
                        del perms[perm]

    # -- enforcement ---------------------------------------------------------------------------------------------
    async def check(self, ext: Any, permission: str, *, capability: str, target: str, origin: str) -> str:
        """Raise PermissionDenied unless the decision for ``permission`` is allow (asking when it is prompt).
        The caller has already checked the effective grants. Returns how it was allowed (for the audit)."""
        grantee = Grantee.of(ext)
        dec = self.decision(grantee, permission)
        if dec.state == "allow":
            return f"allowed {'by the user' if dec.source == 'user' else 'by the ' + dec.source}"
        if dec.state == "deny":
            raise PermissionDenied(
                f"PermissionDenied: {grantee.id} tried to use {capability} {target}: {permission} is denied "
                f"({dec.describe()}). {self._how(grantee.id, permission)}")
        answer, why = await self._ask(grantee, permission, capability, target, origin)
        if answer != "allow":
            raise PermissionDenied(f"PermissionDenied: {grantee.id} tried to use {capability} {target}: {why}")
        return why

    def _how(self, ext_id: str, permission: str) -> str:
        where = f" --profile {shlex.quote(str(self.path))}" if self.path is not None else ""
        dash = self.how_to_decide or "the dashboard of protoreg serve (http://localhost:PORT/, Permission grants)"
        return (f"To allow it: protoreg grants {shlex.quote(ext_id)} --allow {shlex.quote(permission)}{where}, "
                f"or on {dash}")

    async def _ask(self, grantee: Grantee, permission: str, capability: str, target: str,
                   origin: str) -> tuple[str, str]:
        key = (grantee.id, permission)
        pending = self._pending.get(key)
        if pending is None:
            if self.on_prompt is None:
                return "deny", (f"{permission} needs a decision (the decision is prompt) and this app answers no "
                                "prompts (no Session(on_prompt=...)). " + self._how(grantee.id, permission))
            loop = asyncio.get_running_loop()
            req = PromptRequest(secrets.token_urlsafe(9), grantee.id, permission, capability, target, origin,
                                time.time(), self.prompt_timeout)
            pending = _Pending(req, loop.create_future())
            self._pending[key] = pending
            pending.task = asyncio.ensure_future(self._run_prompt(pending))
            pending.timer = loop.call_later(self.prompt_timeout, self._time_out, pending)
            self._notify("prompt", req)
        else:
            pending.request.waiting += 1
        try:
            while not pending.future.done():  # a decision made elsewhere (the CLI, another process) answers too
                await asyncio.wait([pending.future], timeout=0.5)
                dec = self.decision(grantee, permission)
                if not pending.future.done() and dec.state != "prompt":
                    pending.future.set_result((dec.state, "once", f"{dec.state} by the user's decision "
                                                                  f"({dec.describe()})"))
            state, expires, why = pending.future.result()
        finally:
            if pending.future.done() and self._pending.get(key) is pending:
                self._finish(key, pending)
        if expires != "once" and state in ("allow", "deny"):
            try:
                self.decide(grantee, permission, state, expires=expires)  # type: ignore[arg-type]
            except DecisionError as exc:
                log.warning("the prompt's answer could not be remembered: %s", exc)
        return state, why

    def _finish(self, key: tuple[str, str], pending: _Pending) -> None:
        self._pending.pop(key, None)
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.task is not None and not pending.task.done():
            pending.task.cancel()
        self._notify("answered", pending.request)

    def _time_out(self, pending: _Pending) -> None:
        if not pending.future.done():
            pending.future.set_result(("deny", "once", (
                f"nobody answered the prompt for {pending.request.permission} within {self.prompt_timeout:g}s, "
                "so it was denied (a prompt that times out is a denial). "
                + self._how(pending.request.extension, pending.request.permission))))

    async def _run_prompt(self, pending: _Pending) -> None:
        assert self.on_prompt is not None
        try:
            result = await self.on_prompt(pending.request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the app's callback failed: deny, and say so
            log.exception("on_prompt failed")
            if not pending.future.done():
                pending.future.set_result(("deny", "once", f"the app's prompt handler failed ({type(exc).__name__}: "
                                                           f"{exc}), so it was denied"))
            return
        if not pending.future.done():
            pending.future.set_result(_normalize(result, pending.request))

    def pending(self) -> list[PromptRequest]:
        """Prompts waiting for an answer, oldest first."""
        return sorted((p.request for p in self._pending.values()), key=lambda r: r.created)

    def answer(self, prompt_id: str, decision: str, expires: str | float | datetime | None = "once") -> bool:
        """Answer a pending prompt (e.g. from the dashboard); ``expires`` other than "once" remembers it. False
        when no such prompt is pending (answered, timed out)."""
        if decision not in ("allow", "deny"):
            raise DecisionError(f"a prompt is answered allow or deny, not {decision!r}")
        if expires != "once":
            parse_expires(expires)  # refuse a bad expiry now, not after the answer
        for pending in self._pending.values():
            if pending.request.id == prompt_id and not pending.future.done():
                pending.future.set_result(_normalize(PromptAnswer(decision, expires),  # type: ignore[arg-type]
                                                     pending.request, by="the dashboard"))
                return True
        return False

    def _forget_pending_answers(self, ext_id: str, permission: str) -> None:
        """A decision made while a prompt for it is pending answers that prompt."""
        pending = self._pending.get((ext_id, permission))
        if pending is None or pending.future.done():
            return
        dec = self._stored(ext_id, permission)
        if dec is not None and dec.state in ("allow", "deny"):
            pending.future.set_result((dec.state, "once", f"{dec.state} by the user's decision ({dec.describe()})"))


def _normalize(result: Any, req: PromptRequest, by: str = "the app") -> tuple[str, Any, str]:
    """on_prompt's answer -> (state, expires or "once", why)."""
    expires: Any = "once"
    if isinstance(result, PromptAnswer):
        result, expires = result.decision, result.expires
    elif isinstance(result, tuple) and len(result) == 2:
        result, expires = result
    if expires != "once":
        try:
            parse_expires(expires)
        except DecisionError as exc:  # answered, but can't be remembered: answer this call only
            log.warning("the answer to %s can't be remembered: %s", req.describe(), exc)
            expires = "once"
    if result == "allow":
        return "allow", expires, f"allowed when prompted (answered by {by})"
    if result == "deny":
        return "deny", expires, f"the user denied {req.permission} when prompted (answered by {by})"
    return "deny", "once", (f"the prompt for {req.permission} got the answer {result!r}, which is neither allow nor "
                            "deny, so it was denied")

