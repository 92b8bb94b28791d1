"""The protoreg error tree.

Every error protoreg raises derives from :class:`ProtoregError`, and each also inherits the stdlib type a
caller would naturally catch (``InvalidURL`` is a ``ValueError``, ``UnknownScheme`` a ``LookupError``).
Each message says what happened, why, and what to change.

::

    ProtoregError
    ├── InvalidURL(ValueError)            a URL that WHATWG parsing rejects, or a registered-scheme URL with no host
    ├── UnknownScheme(LookupError)        no installed extension handles the scheme
    ├── ManifestError(ValueError)         every problem of a manifest.json at once (.problems)
    ├── InstallError(RuntimeError)        an extension cannot be installed or uninstalled (conflict, unknown id)
    ├── PolicyError(PermissionError)      a request blocked by CORS / same-origin / mode rules
    │   └── ExtensionRevoked              the extension was revoked by its store (HTTP 403 "revoked by <store>")
    ├── TrustError(RuntimeError)          a store's metadata or a bundle failed verification (names store and role)
    ├── InvalidPolicy(ValueError)         a hand-built CSP that would change meaning when sent as a header
    ├── InvalidPattern(ValueError)        text used as a WebExtension match pattern that is not one
    ├── InvalidRequest(ValueError)        a request that can't be sent as given (a malformed header name or value)
    ├── PermissionDenied(PermissionError) a capability call not granted by the manifest
    ├── SandboxError(OSError)             a required sandbox layer is unavailable or failed to engage
    └── HandlerError(RuntimeError)        a handler or its worker failed (.status: 500/502/504/507)
        ├── WorkerCrashed                 the worker process died with requests in flight
        ├── DataDirFull                   the data dir holds more than its cap: no worker starts (507)
        └── HandlerTimeout(TimeoutError)  the per-request timeout expired
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DataDirFull",
    "ExtensionRevoked",
    "HandlerError",
    "HandlerTimeout",
    "InstallError",
    "InvalidPattern",
    "InvalidPolicy",
    "InvalidRequest",
    "InvalidURL",
    "ManifestError",
    "ManifestProblem",
    "MessageError",
    "PermissionDenied",
    "PolicyError",
    "ProtoregError",
    "SandboxError",
    "TrustError",
    "UnknownMessage",
    "UnknownScheme",
    "WorkerCrashed",
]


class ProtoregError(Exception):
    """Root of every error protoreg raises."""


class InvalidURL(ProtoregError, ValueError):
    """A URL could not be parsed or resolved.

    ``url`` is the input, ``base`` the base it was resolved against (or None), ``reason`` a short cause.
    """

    def __init__(self, url: str, reason: str, *, base: str | None = None) -> None:
        self.url = url
        self.base = base
        self.reason = reason
        against = f" against base {base!r}" if base is not None else ""
        super().__init__(f"invalid URL {url!r}{against}: {reason}")


class UnknownScheme(ProtoregError, LookupError):
    """No installed extension handles ``scheme``."""

    def __init__(self, scheme: str, known: Sequence[str] = ()) -> None:
        self.scheme = scheme
        self.known = tuple(known)
        listing = ", ".join(self.known) if self.known else "none"
        super().__init__(
            f"no installed extension handles the scheme {scheme!r} (registered schemes: {listing}). "
            f"Install an extension whose manifest.json lists {{\"protocol\": {scheme!r}}} in protocol_handlers."
        )


@dataclass(frozen=True)
class ManifestProblem:
    """One problem in a manifest: where (JSON path), what value, what is wrong and how to fix it."""

    path: str
    message: str
    hint: str = ""
    value: Any = None

    def __str__(self) -> str:
        where = self.path or "(manifest)"
        shown = "" if self.value is None else f" (got {self.value!r})"
        fix = f" Fix: {self.hint}" if self.hint else ""
        return f"{where}: {self.message}{shown}.{fix}"


class ManifestError(ProtoregError, ValueError):
    """A manifest has one or more problems; ``problems`` lists them all."""

    def __init__(self, source: str, problems: Sequence[ManifestProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}:\n{lines}")


class InstallError(ProtoregError, RuntimeError):
    """An extension cannot be installed or uninstalled."""


class PolicyError(ProtoregError, PermissionError):
    """A fetch was blocked by origin policy (CORS, same-origin mode, a failed preflight)."""


class ExtensionRevoked(PolicyError):
    """The extension serving a URL was disabled: revoked by (or dropped from) the store that signed it."""

    status = 403

    def __init__(self, extension: str, reason: str) -> None:
        self.extension = extension
        self.reason = reason
        super().__init__(f"{extension} is disabled: {reason}. Its workers were stopped and its URLs are refused; "
                         "uninstall it (protoreg uninstall) or install another extension for its schemes")


class TrustError(ProtoregError, RuntimeError):
    """A store's signed metadata or a bundle did not verify: the message names the store, the role and the fix."""


class PermissionDenied(ProtoregError, PermissionError):
    """A handler used a capability its manifest does not grant."""


class MessageError(ProtoregError, RuntimeError):
    """A message to a named sandbox of the extension failed (``runtime.sandbox(name).call(...)``).

    ``kind`` says how: "undeclared" (no such sandbox in manifest.json), "unknown_message" (its handleMessage raised
    UnknownMessage), "too_large", "timeout", "crashed", "not_json", "failed" (handleMessage raised), "refused"."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


class UnknownMessage(MessageError):
    """Raised by a sandbox's ``handleMessage`` for a message name it does not handle."""

    def __init__(self, message: str, kind: str = "unknown_message") -> None:
        super().__init__(message, kind)


class SandboxError(ProtoregError, OSError):
    """A sandbox layer that the host requires is unavailable or did not engage."""


class HandlerError(ProtoregError, RuntimeError):
    """A handler or its worker failed; ``status`` is the HTTP status the failure maps to."""

    status: int = 502

    def __init__(self, message: str, *, status: int | None = None, extension: str | None = None) -> None:
        if status is not None:
            self.status = status
        self.extension = extension
        super().__init__(message)


class WorkerCrashed(HandlerError):
    """The worker process died while requests were in flight."""

    status = 502


class DataDirFull(HandlerError):
    """The extension's data dir holds more than its cap (``SandboxPolicy.disk_max``): no worker starts for it until
    space is freed or the cap raised (protoreg/sandbox/diskquota.py)."""

    status = 507


class HandlerTimeout(HandlerError, TimeoutError):
    """The per-request timeout expired before the handler answered."""

    status = 504


class InvalidRequest(ProtoregError, ValueError):
    """A request that can't be sent as given: a header name that is not an HTTP token, or a value with control
    characters or text that can't be encoded (e.g. a lone surrogate from undecodable bytes)."""


class ConfigError(ProtoregError, ValueError):
    """A host setting (a WorkerConfig field, a PROTOREG_* environment variable) has a value protoreg can't use."""


class InvalidPattern(ProtoregError, ValueError):
    """Text used as a WebExtension match pattern (a host permission, a store ceiling, a content script's
    ``matches``) that is not one; the message says what is wrong and how to write it."""


class InvalidPolicy(ProtoregError, ValueError):
    """A Content Security Policy built in code that can't be sent as a header without changing its meaning."""
