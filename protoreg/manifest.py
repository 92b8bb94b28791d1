"""``manifest.json``: pydantic models, bundle checks, and one ManifestError listing every problem.

Every rule lives in a validator of the models below, so one ``model_validate`` call collects every problem; the
file-system checks (missing files, symlinks out of the bundle) run inside the same validators when the bundle
directory is passed in the validation context. See docs/manifest.md for every key, its rules and its errors.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from protoreg.errors import ManifestError, ManifestProblem
from protoreg.policy.matchpatterns import pattern_problem
from protoreg.policy.schemes import check_scheme

__all__ = ["KNOWN_PERMISSIONS", "MAX_MANIFEST_BYTES", "ContentScript", "Manifest", "ProtocolHandler", "ResponseFilter",
           "Sandbox",
           "is_match_pattern",
           "load_manifest", "manifest_json_schema", "match_pattern_problem", "parse_manifest",
           "validate_manifest"]

log = logging.getLogger("protoreg.manifest")

#: The API permissions protoreg can grant (WebExtension-style names).
KNOWN_PERMISSIONS: Final = frozenset({"storage", "responseFilter"})
#: A manifest.json larger than this is refused before it is parsed.
MAX_MANIFEST_BYTES: Final = 1024 * 1024
#: JSON nested deeper than this is refused (a manifest needs 4 levels; recursion limits start near 1000).
MAX_MANIFEST_DEPTH: Final = 32
_HANDLER_KEYS: Final = ("protocol", "name", "uriTemplate", "uriHandlerScript", "uriIcon", "uriIsTrustworthy")
_VERSION: Final = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")
# Firefox's add-on id rule: an email-like id or a {GUID}.
_ID: Final = re.compile(r"^(\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}"
                        r"|[A-Za-z0-9\-._]*@[A-Za-z0-9\-._]+)$")
_HTTPS_TEMPLATE: Final = re.compile(r"^https://[^/?#\\%@\s]+(?:[/?#]|$)", re.IGNORECASE)
_SCHEME_PREFIX: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def _fail(message: str, hint: str) -> PydanticCustomError:
    """A validation error that keeps its fix hint apart from the message."""
    return PydanticCustomError("manifest", "{message}", {"message": message, "hint": hint})


# -- match patterns ---------------------------------------------------------------------------------------------
def match_pattern_problem(pattern: str) -> tuple[str, str] | None:
    """None when ``pattern`` is a WebExtension match pattern, else ``(what is wrong, how to fix it)``."""
    return pattern_problem(pattern)


def is_match_pattern(pattern: str) -> bool:
    return match_pattern_problem(pattern) is None


def _host_pattern(value: str) -> str:
    problem = match_pattern_problem(value)
    if problem is not None:
        raise _fail(*problem)
    return value


def _permission(value: str) -> str:
    if value in KNOWN_PERMISSIONS or (("://" in value or value == "<all_urls>") and is_match_pattern(value)):
        return value
    if "://" in value:
        return _host_pattern(value)
    close = difflib.get_close_matches(value, sorted(KNOWN_PERMISSIONS), n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + (
        f"protoreg grants {', '.join(sorted(KNOWN_PERMISSIONS))}; host match patterns go in host_permissions")
    raise _fail(f"unknown permission {value!r}", hint)


# -- bundle paths -----------------------------------------------------------------------------------------------
def _bundle_path(value: str, info: ValidationInfo, what: str, *, python: bool) -> str:
    """Check a bundle-relative POSIX path (and, given the bundle root in the context, the file it names)."""
    name = PurePosixPath(value.replace("\\", "/")).name or ("handler.py" if python else "icon.svg")
    hint = f"use a relative path inside the extension directory, such as protocol/{name}"
    if not value.strip():
        raise _fail(f"the {what} path is empty", hint)
    pure = PurePosixPath(value)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", value) or "\\" in value:
        raise _fail(f"the {what} path must be a relative POSIX path (no leading '/', drive letter or '\\')", hint)
    if ".." in pure.parts:
        raise _fail(f"the {what} path must stay inside the extension directory (it contains '..')", hint)
    if python and pure.suffix != ".py":
        raise _fail(f"the {what} must be a Python file ending in .py", f"rename it to {pure.with_suffix('.py')}")
    if python and any(p.startswith(".") or p == "__pycache__" for p in pure.parts):
        raise _fail(f"the {what} is in a hidden or __pycache__ directory, which install does not read",
                    f"move it to a visible directory, such as protocol/{pure.name}")
    normalized = pure.as_posix()
    root = (info.context or {}).get("root")
    if root is None:
        return normalized
    try:
        _check_bundle_file(Path(root), normalized, pure, what, python=python)
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte, a symlink loop
        if isinstance(exc, PydanticCustomError):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _fail(f"the {what} path can't be looked up in the extension directory ({why})",
                    f"use a short relative path of ordinary names, such as protocol/{name[:40]}") from None
    return normalized


def _check_bundle_file(root: Path, normalized: str, pure: PurePosixPath, what: str, *, python: bool) -> None:
    full = root / normalized
    if not full.exists() and not full.is_symlink():
        raise _fail(f"the {what} file does not exist",
                    f"create {normalized} in the extension directory or fix the path")
    if not full.resolve().is_relative_to(root.resolve()):
        raise _fail(f"the {what} is a symlink pointing outside the extension directory",
                    "copy the file into the extension directory instead of linking to it")
    if not full.resolve().is_file():
        raise _fail(f"the {what} path is not a regular file", f"point {what} at a file, not a directory")
    if python and any((root / parent).is_symlink() for parent in pure.parents if parent.parts):
        raise _fail(f"the {what} is inside a symlinked directory, which install does not follow",
                    "move the script into a real directory of the bundle")


# -- models -----------------------------------------------------------------------------------------------------
class ProtocolHandler(BaseModel):
    """One ``protocol_handlers`` entry. Unknown keys are errors (a typo here silently changes behaviour)."""

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
        scheme = _SCHEME_PREFIX.match(v)
        hint = "use https://host/path?url=%s or a bundle-relative path such as pages/open.html?url=%s"
        if scheme is not None:
            if scheme.group(1).lower() != "https":
                raise _fail(f"uriTemplate must be an https URL or a path inside the extension, not "
                            f"{scheme.group(1)}:", hint)
            if not _HTTPS_TEMPLATE.match(v):
                raise _fail("uriTemplate must name a host right after https:// (no %s, '@' or '%' in the host)", hint)
            return v
        path = re.split(r"[?#]", v, maxsplit=1)[0]
        if v.startswith("//") or "\\" in path:
            raise _fail("an extension-relative uriTemplate must be a path ('//host' and '\\' name other hosts)", hint)
        if ".." in PurePosixPath(path).parts:
            raise _fail("an extension-relative uriTemplate must stay inside the extension (it contains '..')", hint)
        return v

    @field_validator("uriHandlerScript")
    @classmethod
    def _script(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _bundle_path(v, info, "handler script", python=True)

    @field_validator("uriIcon")
    @classmethod
    def _icon(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _bundle_path(v, info, "icon", python=False)

    @model_validator(mode="after")
    def _script_or_template(self, info: ValidationInfo) -> ProtocolHandler:
        if not (info.context or {}).get("cross_checked") and not self.uriHandlerScript and not self.uriTemplate:
            raise _fail(*_NEEDS_TARGET)
        return self


class ContentSecurityPolicy(BaseModel):
    """``content_security_policy``; MV3 keys other than protocol_pages (extension_pages, sandbox) are ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    protocol_pages: str | None = Field(
        None, description="A CSP added to every response of this extension's schemes (it can only tighten).")

    @field_validator("protocol_pages")
    @classmethod
    def _header_safe(cls, v: str | None) -> str | None:
        if v is not None and (not v.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in v)):
            raise _fail("protocol_pages must be printable ASCII: it is sent as a Content-Security-Policy header",
                        "remove line breaks and non-ASCII characters (percent-encode URLs in source expressions)")
        return v


class Gecko(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = Field(None, max_length=255, description="The extension id: name@domain or a {GUID}.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not _ID.match(v):
            raise _fail("the extension id must look like name@domain or be a {GUID}", 'e.g. "my-scheme@example.org"')
        return v


class BrowserSpecificSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    gecko: Gecko | None = None


_COMMAND_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _command_name(v: str) -> str:
    if not _COMMAND_NAME.match(v):
        raise _fail(f"command name {v!r} must be 1-32 lowercase letters, digits or '-', starting with a letter",
                    'e.g. "ipns"')
    return v


def _sandbox_name(v: str) -> str:
    if not _COMMAND_NAME.match(v):
        raise _fail(f"sandbox name {v!r} must be 1-32 lowercase letters, digits or '-', starting with a letter",
                    'e.g. "net"')
    return v


class Command(BaseModel):
    """One ``commands`` entry: a host-side command (``protoreg ext run EXT NAME ...``) that runs in the extension's
    own sandboxed worker with its own grants. Web content can never reach it (it has no scheme)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    script: str = Field(description="Bundle-relative path of the Python script defining async runCommand(command).")
    description: str = Field("", max_length=200, description="One line shown by protoreg ext commands.")

    @field_validator("script")
    @classmethod
    def _script(cls, v: str, info: ValidationInfo) -> str:
        return _bundle_path(v, info, "command script", python=True)


class Sandbox(BaseModel):
    """One ``sandboxes`` entry: a script run in a worker of its own with only its own grants; handlers reach it by
    JSON messages (``runtime.sandbox(name).call(message, payload)``), see docs/sandboxes.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    script: str = Field(description="Bundle-relative path of the Python script defining "
                                    "async handleMessage(name, payload).")
    permissions: list[Annotated[str, AfterValidator(_permission)]] = Field(
        default_factory=list, description='API permissions of this sandbox only ("storage").')
    host_permissions: list[Annotated[str, AfterValidator(_host_pattern)]] = Field(
        default_factory=list, description="Match patterns of the hosts this sandbox (only) may fetch.")

    @field_validator("script")
    @classmethod
    def _script(cls, v: str, info: ValidationInfo) -> str:
        return _bundle_path(v, info, "sandbox script", python=True)

    @property
    def granted_hosts(self) -> list[str]:
        return [*self.host_permissions, *(p for p in self.permissions if p not in KNOWN_PERMISSIONS)]

    @property
    def requested(self) -> list[str]:
        """Every permission and host pattern this sandbox requests."""
        return list(dict.fromkeys([*self.permissions, *self.host_permissions]))


def _content_pattern(value: str) -> str:
    problem = match_pattern_problem(value)
    if problem is not None:
        raise _fail(*problem)
    return value


class ContentScript(BaseModel):
    """One ``content_scripts`` entry: JS/CSS the gateway injects into matching HTML pages of registered schemes
    (docs/handlers.md, "Content scripts and filters"). The extension needs host permission for what it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matches: list[Annotated[str, AfterValidator(_content_pattern)]] = Field(
        min_length=1, description='Match patterns over registered schemes ("ipfs://*/*", "web+foo://example/*"); '
                                  '"<all_urls>" is every registered scheme.')
    exclude_matches: list[Annotated[str, AfterValidator(_content_pattern)]] = Field(
        default_factory=list, description="Pages matching any of these are left alone.")
    js: list[str] = Field(default_factory=list, description="Bundle-relative .js files, injected in order.")
    css: list[str] = Field(default_factory=list, description="Bundle-relative .css files, injected in order.")
    run_at: Literal["document_start", "document_end", "document_idle"] = Field(
        "document_idle", description="document_start: first in <head>; document_end and document_idle: at the end "
                                     "of <body> (document_idle deferred).")

    @field_validator("js", "css")
    @classmethod
    def _files(cls, v: list[str], info: ValidationInfo) -> list[str]:
        suffix = "." + str(info.field_name)
        out = []
        for path in v:
            if not path.endswith(suffix):
                raise _fail(f"{path!r} must be a {suffix} file", f"list {suffix} files under {info.field_name!r}")
            out.append(_bundle_path(path, info, f"content script {info.field_name}", python=False))
        return out

    @model_validator(mode="after")
    def _something(self) -> ContentScript:
        if not self.js and not self.css:
            raise _fail("a content script needs js or css files", 'add "js": ["content.js"]')
        return self


class ResponseFilter(BaseModel):
    """One ``response_filters`` entry: a Python filter over the bodies of matching responses of any extension, run
    in this extension's worker (needs the "responseFilter" permission and host permission for what it matches)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    matches: list[Annotated[str, AfterValidator(_content_pattern)]] = Field(
        min_length=1, description='Match patterns over registered schemes; "<all_urls>" is every registered scheme.')
    exclude_matches: list[Annotated[str, AfterValidator(_content_pattern)]] = Field(default_factory=list)
    script: str = Field(description="Bundle-relative .py file defining filterResponse(response, chunks), an async "
                                    "generator yielding the new body.")
    types: list[str] = Field(default_factory=list, description='Content types filtered (e.g. ["text/html"]); '
                                                               "empty: every type.")

    @field_validator("script")
    @classmethod
    def _script(cls, v: str, info: ValidationInfo) -> str:
        return _bundle_path(v, info, "response filter script", python=True)


class Manifest(BaseModel):
    """A WebExtension-style manifest with ``protocol_handlers``. Unknown top-level keys are ignored (logged)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    manifest_version: Literal[2, 3] = Field(3, description="2 or 3 (default 3).")
    name: str = Field(min_length=1, max_length=200, description="The extension's name.")
    version: str = Field(description="1 to 4 dot-separated integers, e.g. 1.0.0.")
    browser_specific_settings: BrowserSpecificSettings | None = Field(
        None, description="gecko.id is the extension id; without it the id is the name as a slug plus @local.")
    protocol_handlers: list[ProtocolHandler] = Field(min_length=1, description="The schemes this extension handles.")
    permissions: list[Annotated[str, AfterValidator(_permission)]] = Field(
        default_factory=list, description='API permissions ("storage"); MV2-style host match patterns are accepted.')
    host_permissions: list[Annotated[str, AfterValidator(_host_pattern)]] = Field(
        default_factory=list, description="Match patterns of the hosts the handler may fetch.")
    content_security_policy: ContentSecurityPolicy | None = Field(
        None, description="protocol_pages: a CSP added to every response of this extension's schemes.")
    commands: dict[Annotated[str, AfterValidator(_command_name)], Command] = Field(
        default_factory=dict, description="Host-side commands (protoreg ext run EXT NAME ARGS): each runs its "
                                          "script's runCommand in the extension's sandboxed worker.")
    sandboxes: dict[Annotated[str, AfterValidator(_sandbox_name)], Sandbox] = Field(
        default_factory=dict, description="Named sandboxes: scripts with their own grants in their own workers, "
                                          "reached by JSON messages from the handlers (docs/sandboxes.md).")
    content_scripts: list[ContentScript] = Field(
        default_factory=list, description="JS/CSS the gateway injects into matching HTML pages of registered schemes.")
    response_filters: list[ResponseFilter] = Field(
        default_factory=list, description='Python filters over matching response bodies (needs "responseFilter").')
    origin_isolation: Literal["extension", "origin"] = Field(
        "extension", description='"origin": one worker process per origin (scheme://host), so a compromised handler '
                                 "serving one origin can't reach another origin's storage or requests; "
                                 '"extension" (default): one pool of workers serves every origin of the extension.')

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _VERSION.match(v):
            raise _fail("version must be 1 to 4 dot-separated integers without leading zeros", 'e.g. "1.0.0"')
        return v

    @model_validator(mode="after")
    def _unique(self, info: ValidationInfo) -> Manifest:
        if not (info.context or {}).get("cross_checked"):
            for path, message, hint, _value in _cross_checks(self.model_dump()):
                raise _fail(f"{path}: {message}", hint)
        return self

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

    @property
    def ignored_keys(self) -> list[str]:
        """Top-level keys protoreg does not use (``description``, ``icons``, ...)."""
        return sorted(self.model_extra or ())


# -- problems ---------------------------------------------------------------------------------------------------
_NEEDS_TARGET: Final = ("a protocol handler needs uriHandlerScript or uriTemplate (or both)",
                        'add "uriHandlerScript": "protocol/handler.py" with an async handleRequest(request)')


def _cross_checks(data: Any) -> list[tuple[str, str, str, Any]]:
    """Rules across keys, checked on the raw data so they are reported even when other keys of an entry fail:
    each entry needs a script or a template, and each scheme is declared once."""
    handlers = data.get("protocol_handlers") if isinstance(data, dict) else None
    found: list[tuple[str, str, str, Any]] = []
    first: dict[str, int] = {}
    for i, h in enumerate(handlers if isinstance(handlers, list) else ()):
        if not isinstance(h, dict):
            continue
        if h.get("uriHandlerScript") is None and h.get("uriTemplate") is None:
            found.append((f"protocol_handlers[{i}]", *_NEEDS_TARGET, None))
        scheme = h.get("protocol")
        if not isinstance(scheme, str) or check_scheme(scheme) is not None:
            continue  # an unclaimable scheme is reported once, by the protocol rule
        if scheme in first:
            found.append((f"protocol_handlers[{i}].protocol",
                          f"the scheme {scheme!r} is already declared by protocol_handlers[{first[scheme]}]",
                          f"keep one entry per scheme: merge protocol_handlers[{i}] into "
                          f"protocol_handlers[{first[scheme]}] or remove it", scheme))
        else:
            first[scheme] = i
    return found


def _json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_HINTS: Final = {
    "string_type": "use a JSON string in double quotes",
    "bool_type": "use true or false, without quotes",
    "list_type": 'use a JSON array, e.g. ["..."]',
    "model_type": "use a JSON object { ... }",
    "model_attributes_type": "use a JSON object { ... }",
    "dict_type": "use a JSON object { ... }",
    "string_too_short": "use a non-empty string",
    "too_short": "list at least one entry",
    "string_too_long": "shorten it",
}


def _hint(e: Any, loc: tuple[Any, ...]) -> str:
    kind = e["type"]
    if kind == "manifest":
        return str(e["ctx"]["hint"])
    if kind == "missing":
        return f"add the key {loc[-1]!r}" + (' (e.g. "1.0.0")' if loc[-1] == "version" else "")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _HANDLER_KEYS, n=1, cutoff=0.6)
        keys = ", ".join(_HANDLER_KEYS)
        return (f"did you mean {close[0]!r}? " if close else "") + f"a handler entry has only the keys {keys}"
    if kind == "literal_error":
        return f"use {e['ctx']['expected']}"
    return _TYPE_HINTS.get(kind, "see docs/manifest.md for this key's rules")


def _problems_from_validation(err: ValidationError) -> list[ManifestProblem]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        message = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        value = e.get("input") if e["type"] != "missing" and not isinstance(e.get("input"), dict | list) else None
        problems.append(ManifestProblem(_json_path(loc), message.rstrip("."), _hint(e, loc).rstrip("."), value))
    return problems


def _single(source: str, message: str, hint: str, value: Any = None) -> ManifestError:
    return ManifestError(source, [ManifestProblem("", message, hint, value)])


def load_manifest(directory: str | Path) -> Manifest:
    """Read and validate ``<directory>/manifest.json``; raise ManifestError listing every problem."""
    root = Path(directory)
    source = str(root / "manifest.json")
    if not root.is_dir():
        raise _single(str(root), "the extension directory does not exist or is not a directory",
                      "pass the directory that contains manifest.json")
    path = root / "manifest.json"
    if not path.exists():
        raise _single(source, "manifest.json is missing", "create manifest.json (see docs/manifest.md)")
    if not path.resolve().is_relative_to(root.resolve()) or not path.resolve().is_file():
        raise _single(source, "manifest.json is a symlink out of the extension directory or not a regular file",
                      "put a regular manifest.json file in the extension directory")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise _single(source, f"manifest.json is larger than {MAX_MANIFEST_BYTES // 1024} KiB",
                      "a manifest lists keys, not content: move data into files of the bundle")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _single(source, f"manifest.json can't be read: {exc}", "save it as UTF-8 JSON") from None
    return parse_manifest(raw, root, source=source)


def parse_manifest(raw: bytes, root: str | Path, *, source: str | None = None) -> Manifest:
    """Validate manifest bytes already read (e.g. from a verified bundle); ``root`` holds the bundle's files."""
    root = Path(root)
    source = source or str(root / "manifest.json")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _single(source, f"manifest.json is larger than {MAX_MANIFEST_BYTES // 1024} KiB",
                      "a manifest lists keys, not content: move data into files of the bundle")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _single(source, f"manifest.json can't be read: {exc}", "save it as UTF-8 JSON") from None
    deep = _too_deep(text, MAX_MANIFEST_DEPTH)
    if deep is not None:
        raise ManifestError(source, [ManifestProblem(
            deep[1] or "(manifest)", f"the JSON is nested {deep[0]} levels deep here, more than the "
            f"{MAX_MANIFEST_DEPTH} a manifest may use", "a manifest is an object of keys, lists and small objects: "
            "remove the nesting (see docs/manifest.md)")])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _single(source, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                      "fix the JSON syntax there (a trailing comma or a missing quote is the usual cause)") from None
    except RecursionError:  # unreachable after the depth check, kept as a guard for other interpreters
        raise _single(source, "the JSON is nested too deeply to parse", "remove the nesting") from None
    manifest = validate_manifest(data, root=root, source=source)
    if manifest.ignored_keys:
        log.info("%s: keys not used by protoreg are ignored: %s", source, ", ".join(manifest.ignored_keys))
    return manifest


def validate_manifest(data: Any, *, root: str | Path | None = None, source: str = "manifest.json") -> Manifest:
    """Validate already-parsed manifest data (checking its files when ``root`` is the bundle directory); raise
    ManifestError listing every problem, and nothing else, whatever ``data`` holds."""
    if not isinstance(data, dict):
        raise _single(source, "the manifest must be a JSON object", "wrap the keys in { }", type(data).__name__)
    deep = _nested_too_deep(data, MAX_MANIFEST_DEPTH)
    if deep is not None:
        raise ManifestError(source, [ManifestProblem(
            deep or "(manifest)", f"the data is nested more than the {MAX_MANIFEST_DEPTH} levels a manifest may use",
            "a manifest is an object of keys, lists and small objects: remove the nesting")])
    unencodable = _surrogate_problems(data)
    if unencodable:
        raise ManifestError(source, unencodable)
    problems: list[ManifestProblem] = []
    manifest: Manifest | None = None
    context = {"cross_checked": True} if root is None else {"root": Path(root), "cross_checked": True}
    try:
        manifest = Manifest.model_validate(data, context=context)
    except ValidationError as err:
        problems.extend(_problems_from_validation(err))
    problems.extend(ManifestProblem(*found) for found in _cross_checks(data))
    if problems or manifest is None:
        raise ManifestError(source, sorted(problems, key=lambda p: _path_order(p.path, data)))
    return manifest


def _nested_too_deep(data: Any, limit: int) -> str | None:
    """The JSON path of a container nested deeper than ``limit`` in parsed data (iteratively), else None."""
    todo: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while todo:
        loc, value = todo.pop()
        if isinstance(value, dict | list):
            if len(loc) >= limit:
                return _json_path(loc)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend(((*loc, k), v) for k, v in items)
    return None


def _too_deep(text: str, limit: int) -> tuple[int, str] | None:
    """Where JSON ``text`` nests arrays/objects deeper than ``limit``: (depth reached, JSON path of the container at
    the limit), found by one scan without recursion (the json module recurses once per level). None if it doesn't.
    Malformed text is left for json.loads to report."""
    stack: list[list[Any]] = []  # per open container: [kind, current key or index]
    deepest = 0
    where = ""
    i, n = 0, len(text)
    last_string: str | None = None
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            try:
                last_string = json.loads(text[i:j + 1])
            except ValueError:
                last_string = None
            i = j + 1
            continue
        if c == ":" and stack and stack[-1][0] == "{":
            stack[-1][1] = last_string
        elif c == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1
        elif c in "[{":
            stack.append([c, 0 if c == "[" else None])
            if len(stack) > deepest:
                deepest = len(stack)
                if deepest == limit + 1:
                    where = _json_path(tuple(k for _, k in stack[:limit] if k is not None))
        elif c in "]}" and stack:
            stack.pop()
        i += 1
    return (deepest, where) if deepest > limit else None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _surrogate_problems(data: Any) -> list[ManifestProblem]:
    """Strings holding a lone UTF-16 surrogate (legal JSON escapes such as \\ud800, but not Unicode text): no file
    name, scheme or header can contain one. Walked iteratively; keys and values, each with its JSON path."""
    problems = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while todo:
        loc, value = todo.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if _has_surrogate(key):
                    problems.append(ManifestProblem(_json_path(loc) or "(manifest)",
                                    f"a key contains a lone surrogate escape ({key!a})",
                                    "remove the \\ud800-\\udfff escape: keys and values must be valid Unicode text"))
                else:
                    todo.append(((*loc, key), item))
        elif isinstance(value, list):
            todo.extend(((*loc, i), item) for i, item in enumerate(value))
        elif isinstance(value, str) and _has_surrogate(value):
            problems.append(ManifestProblem(_json_path(loc), "the string contains a lone surrogate escape "
                                            f"({ascii(value)[:80]}), which is not valid Unicode text",
                                            "remove the \\ud800-\\udfff escape or write the character itself"))
    return sorted(problems, key=lambda p: _path_order(p.path, data))


def _path_order(path: str, data: dict[str, Any]) -> tuple[int, list[str | int]]:
    """Sort problems in the order their keys appear in the file, then by path (list indexes numerically)."""
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    keys = list(data)
    parts: list[str | int] = [int(x) if i % 2 else x for i, x in enumerate(re.split(r"(\d+)", path))]
    return (keys.index(top) if top in keys else len(keys), parts)


def manifest_json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (``protoreg schema``)."""
    schema = Manifest.model_json_schema()
    schema["title"] = "protoreg extension manifest.json"
    schema["description"] = ("A WebExtension-style manifest declaring custom URL schemes. protoreg also checks rules "
                             "a schema can't express (files exist inside the bundle); run `protoreg check DIR`.")
    return schema
