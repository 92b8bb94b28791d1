"""``manifest.json``: pydantic models, bundle checks, and one ManifestError listing every problem.

See docs/manifest.md for every key, its rules and its errors.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from protoreg.errors import ManifestError, ManifestProblem
from protoreg.schemes import check_scheme

__all__ = ["KNOWN_PERMISSIONS", "Manifest", "ProtocolHandler", "load_manifest", "manifest_json_schema"]

log = logging.getLogger("protoreg.manifest")

#: The API permissions protoreg can grant (WebExtension-style names).
KNOWN_PERMISSIONS: Final = frozenset({"storage"})
_VERSION: Final = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")
_MATCH: Final = re.compile(r"^(\*|https?|wss?|ftp|[a-z][a-z0-9+.\-]*)://(\*|\*\.[^/*:]+|[^/*:]+)(:[0-9]+)?(/.*)$")
_HINT: Final = " Fix: "


def _fail(message: str, hint: str) -> ValueError:
    return ValueError(f"{message}{_HINT}{hint}")


def is_match_pattern(pattern: str) -> bool:
    return pattern == "<all_urls>" or bool(_MATCH.match(pattern))


class ProtocolHandler(BaseModel):
    """One ``protocol_handlers`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str = Field(description="The scheme: safelisted, or web+/ext+ followed by lowercase letters.")
    name: str = Field(min_length=1, description="A human-readable name for the handler.")
    uriTemplate: str | None = Field(
        None, description="Fallback https (or extension-relative) URL containing %s, used when there is no script.")
    uriHandlerScript: str | None = Field(
        None, description="Bundle-relative path of the Python script defining async handleRequest(request).")
    uriIcon: str | None = Field(None, description="Bundle-relative path of an icon.")
    uriIsTrustworthy: StrictBool = Field(
        False, description="Treat this scheme's origins as potentially trustworthy (secure contexts).")

    @field_validator("protocol")
    @classmethod
    def _scheme(cls, v: str) -> str:
        problem = check_scheme(v)
        if problem:
            raise _fail("this scheme can't be claimed", problem)
        return v

    @field_validator("uriTemplate")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "%s" not in v:
            raise _fail("uriTemplate must contain %s (where the URL goes)", f'e.g. "{v.rstrip("/")}/%s"')
        scheme = v.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", v) else None
        if scheme is not None and scheme != "https":
            raise _fail(f"uriTemplate must be an https URL or a path inside the extension, not {scheme}:",
                        "use https://... or a bundle-relative path such as pages/open.html?url=%s")
        return v

    @model_validator(mode="after")
    def _script_or_template(self) -> ProtocolHandler:
        if not self.uriHandlerScript and not self.uriTemplate:
            raise _fail("a protocol handler needs uriHandlerScript or uriTemplate (or both)",
                        'add "uriHandlerScript": "protocol/handler.py" with an async handleRequest(request)')
        return self


class ContentSecurityPolicy(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    protocol_pages: str | None = Field(
        None, description="A CSP added to every response of this extension's schemes (it can only tighten).")


class Gecko(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    id: str | None = Field(None, min_length=1, max_length=255, description="The extension id.")


class BrowserSpecificSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    gecko: Gecko | None = None


class Manifest(BaseModel):
    """A WebExtension-style manifest with ``protocol_handlers``. Unknown top-level keys are ignored (logged)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    manifest_version: Literal[2, 3] = Field(3, description="2 or 3.")
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(description="1 to 4 dot-separated integers, e.g. 1.0.0.")
    browser_specific_settings: BrowserSpecificSettings | None = None
    protocol_handlers: list[ProtocolHandler] = Field(min_length=1)
    permissions: list[str] = Field(default_factory=list)
    host_permissions: list[str] = Field(default_factory=list,
                                        description="Match patterns of the hosts the handler may fetch.")
    content_security_policy: ContentSecurityPolicy | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.match(v):
            raise _fail("version must be 1 to 4 dot-separated integers without leading zeros", 'e.g. "1.0.0"')
        return v

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, v: list[str]) -> list[str]:
        for p in v:
            if p not in KNOWN_PERMISSIONS and not is_match_pattern(p):
                raise _fail(f"unknown permission {p!r}",
                            f"protoreg grants {', '.join(sorted(KNOWN_PERMISSIONS))}; put host match patterns in "
                            "host_permissions")
        return v

    @field_validator("host_permissions")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for p in v:
            if not is_match_pattern(p):
                raise _fail(f"{p!r} is not a match pattern",
                            'use <scheme>://<host>/<path>, e.g. "https://example.org/*" or "https://*.example.org/*"')
        return v

    @field_validator("protocol_handlers")
    @classmethod
    def _unique(cls, v: list[ProtocolHandler]) -> list[ProtocolHandler]:
        seen: set[str] = set()
        for h in v:
            if h.protocol in seen:
                raise _fail(f"the scheme {h.protocol!r} is declared twice in protocol_handlers",
                            "keep one entry per scheme")
            seen.add(h.protocol)
        return v

    @property
    def id(self) -> str:
        """browser_specific_settings.gecko.id, or ``<name as a slug>@local`` when the manifest gives none."""
        bss = self.browser_specific_settings
        if bss is not None and bss.gecko is not None and bss.gecko.id:
            return bss.gecko.id
        return (re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "extension") + "@local"

    @property
    def granted_hosts(self) -> list[str]:
        """host_permissions plus any match patterns listed under permissions (the Manifest V2 form)."""
        return [*self.host_permissions, *(p for p in self.permissions if p not in KNOWN_PERMISSIONS)]


def _json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems_from_validation(err: ValidationError, data: Any) -> list[ManifestProblem]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"].removeprefix("Value error, ")
        message, _, hint = msg.partition(_HINT)
        if e["type"] == "missing":
            hint = f"add the key {loc[-1]!r}"
        elif e["type"] == "extra_forbidden":
            message, hint = "unknown key", ("check the spelling; a handler entry has protocol, name, uriTemplate, "
                                            "uriHandlerScript, uriIcon and uriIsTrustworthy")
        value = e.get("input") if e["type"] not in ("missing",) and not isinstance(e.get("input"), dict) else None
        problems.append(ManifestProblem(_json_path(loc), message.rstrip("."), hint.rstrip("."), value))
    return problems


def _check_bundle_path(root: Path, rel: Any, path: str, what: str) -> ManifestProblem | None:
    if not isinstance(rel, str) or not rel:
        return None  # the model reports the type error
    hint = f"use a relative path inside the extension directory, such as protocol/{Path(rel).name or 'file'}"
    pure = PurePosixPath(rel)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", rel) or "\\" in rel:
        return ManifestProblem(path, f"the {what} path must be relative to the extension directory", hint, rel)
    if ".." in pure.parts:
        return ManifestProblem(path, f"the {what} path must stay inside the extension directory ('..')", hint, rel)
    full = root / rel
    if not full.exists() and not full.is_symlink():
        return ManifestProblem(path, f"the {what} file does not exist", f"create {full} or fix the path", rel)
    real = full.resolve()
    if not real.is_relative_to(root.resolve()):
        return ManifestProblem(path, f"the {what} is a symlink pointing outside the extension directory",
                               "copy the file into the extension directory instead of linking it", rel)
    if not real.is_file():
        return ManifestProblem(path, f"the {what} path is not a regular file", "point it at a file", rel)
    return None


def load_manifest(directory: str | Path) -> Manifest:
    """Read and validate ``<directory>/manifest.json``; raise ManifestError listing every problem."""
    root = Path(directory)
    source = str(root / "manifest.json")
    if not root.is_dir():
        raise ManifestError(str(root), [ManifestProblem(
            "", "the extension directory does not exist or is not a directory",
            "pass the directory that contains manifest.json")])
    try:
        text = (root / "manifest.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(source, [ManifestProblem("", "manifest.json is missing",
                                                     "create manifest.json (see docs/manifest.md)")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(source, [ManifestProblem("", f"manifest.json can't be read: {exc}",
                                                     "save it as UTF-8 JSON")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(source, [ManifestProblem(
            "", f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "fix the JSON syntax there (a trailing comma or a missing quote is the usual cause)")]) from None
    if not isinstance(data, dict):
        raise ManifestError(source, [ManifestProblem("", "the manifest must be a JSON object",
                                                     "wrap the keys in { }", type(data).__name__)])
    problems: list[ManifestProblem] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems_from_validation(err, data))
    handlers = data.get("protocol_handlers")
    if isinstance(handlers, list):
        for i, h in enumerate(handlers):
            if not isinstance(h, dict):
                continue
            for key, what in (("uriHandlerScript", "handler script"), ("uriIcon", "icon")):
                p = _check_bundle_path(root, h.get(key), f"protocol_handlers[{i}].{key}", what)
                if p is not None:
                    problems.append(p)
    if problems or manifest is None:
        raise ManifestError(source, problems)
    known = set(Manifest.model_fields)
    for key in data:
        if key not in known:
            log.info("%s: key %r is not used by protoreg and is ignored", source, key)
    return manifest


def manifest_json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (``protoreg schema``)."""
    schema = Manifest.model_json_schema()
    schema["title"] = "protoreg extension manifest.json"
    return schema
