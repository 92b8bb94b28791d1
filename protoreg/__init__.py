"""protoreg: custom URL schemes with origin isolation.

Extensions declare schemes in a WebExtension-style ``manifest.json``; their ``handleRequest`` scripts run in
sandboxed worker processes; protoreg applies WHATWG URL rules, origins, CSP, CORS and Secure-Contexts trust in the
parent. See README.md and docs/.

Names are imported lazily (PEP 562) so that ``from protoreg import Response`` inside a worker does not pull in the
parent-side machinery (pydantic, aiohttp).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Conflict": "protoreg.registry",
    "Decision": "protoreg.permissions",
    "ConfigError": "protoreg.errors",
    "DataDirFull": "protoreg.errors",
    "ExtensionRevoked": "protoreg.errors",
    "Extension": "protoreg.registry",
    "FetchResponse": "protoreg.response",
    "HandlerError": "protoreg.errors",
    "HandlerTimeout": "protoreg.errors",
    "InstallError": "protoreg.errors",
    "InvalidPattern": "protoreg.errors",
    "InvalidPolicy": "protoreg.errors",
    "InvalidRequest": "protoreg.errors",
    "InvalidURL": "protoreg.errors",
    "ManifestError": "protoreg.errors",
    "ManifestProblem": "protoreg.errors",
    "MessageError": "protoreg.errors",
    "Origin": "protoreg.policy.origins",
    "PermissionDenied": "protoreg.errors",
    "PermissionManager": "protoreg.permissions",
    "PolicyError": "protoreg.errors",
    "Profile": "protoreg.profile",
    "PromptAnswer": "protoreg.permissions",
    "PromptRequest": "protoreg.permissions",
    "ProtoregError": "protoreg.errors",
    "Registry": "protoreg.registry",
    "FileSlice": "protoreg.messages",
    "Request": "protoreg.messages",
    "Response": "protoreg.messages",
    "SandboxError": "protoreg.errors",
    "SchemeEntry": "protoreg.registry",
    "Session": "protoreg.session",
    "TooManyRedirects": "protoreg.session",
    "TrustError": "protoreg.errors",
    "UnknownScheme": "protoreg.errors",
    "WorkerConfig": "protoreg.worker.config",
    "WorkerCrashed": "protoreg.errors",
}
#: Public submodules, reachable as ``protoreg.NAME`` (the policy modules live in the protoreg.policy package).
_SUBMODULES: dict[str, str] = {
    "cors": "protoreg.policy.cors",
    "csp": "protoreg.policy.csp",
    "gateway": "protoreg.gateway",
    "testing": "protoreg.testing",
}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'protoreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from protoreg import gateway, testing
    from protoreg.errors import (
        ConfigError,
        DataDirFull,
        ExtensionRevoked,
        HandlerError,
        HandlerTimeout,
        InstallError,
        InvalidPattern,
        InvalidPolicy,
        InvalidRequest,
        InvalidURL,
        ManifestError,
        ManifestProblem,
        MessageError,
        PermissionDenied,
        PolicyError,
        ProtoregError,
        SandboxError,
        TrustError,
        UnknownScheme,
        WorkerCrashed,
    )
    from protoreg.messages import FileSlice, Request, Response
    from protoreg.permissions import Decision, PermissionManager, PromptAnswer, PromptRequest
    from protoreg.policy import cors, csp
    from protoreg.policy.origins import Origin
    from protoreg.profile import Profile
    from protoreg.registry import Conflict, Extension, Registry, SchemeEntry
    from protoreg.response import FetchResponse
    from protoreg.session import Session, TooManyRedirects
    from protoreg.worker.config import WorkerConfig
