"""Capability inference (as Jetpack's linker did): read a bundle's Python code and report the capabilities it
appears to use that its manifest does not grant, before anything runs. Static and best-effort: it sees direct
calls such as ``runtime.fetch("https://x/...")``, not URLs computed at run time."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from protoreg.manifest import Manifest
from protoreg.policy.matchpatterns import parse_pattern

__all__ = ["PRAGMA", "Finding", "infer"]

#: Modules that need what the sandbox removes, with the way to do it instead.
_BLOCKED_MODULES = {
    "socket": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "urllib.request": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "http.client": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "requests": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "aiohttp": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "httpx": "handlers have no network; use protoreg.runtime.fetch with host_permissions",
    "subprocess": "handlers can't start processes (seccomp denies fork and exec)",
    "multiprocessing": "handlers can't start processes (seccomp denies fork and exec)",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _call_name(node: ast.Call) -> str:
    parts = []
    f: ast.expr = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


#: A line with this comment is not reported: a call that is meant to be refused (e.g. a test that a handler without
#: grants really can't fetch).
PRAGMA = "protoreg: expect-denied"


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return names


def _reachable(script: str, trees: Mapping[str, ast.AST]) -> set[str]:
    """The bundle files ``script`` runs: itself and the bundle modules it imports, transitively (import roots: the
    script's directory and the bundle root, as the worker's loader resolves them)."""
    roots = ["", script.rpartition("/")[0]]
    seen: set[str] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen or path not in trees:
            continue
        seen.add(path)
        for name in _imports(trees[path]):
            rel = name.replace(".", "/")
            for root in roots:
                base = f"{root}/{rel}" if root else rel
                for cand in (f"{base}.py", f"{base}/__init__.py"):
                    if cand in trees:
                        todo.append(cand)
    return seen


def infer(files: Mapping[str, bytes], manifest: Manifest) -> list[Finding]:
    """Findings for every file of the bundle (relative path -> source bytes).

    With named sandboxes (manifest ``sandboxes``), each sandbox's script and the bundle modules it imports are
    checked against that sandbox's own grants (findings say ``sandbox NAME:``); every other file against the
    extension's."""
    trees: dict[str, ast.AST] = {}
    out: list[Finding] = []
    for path, source in sorted(files.items()):
        try:
            trees[path] = ast.parse(source, filename=path)
        except SyntaxError as exc:
            out.append(Finding(path, exc.lineno or 0, f"syntax error: {exc.msg}"))
    sandboxes = dict(getattr(manifest, "sandboxes", None) or {})
    in_sandbox: dict[str, list[str]] = {}
    for name, spec in sandboxes.items():
        for path in _reachable(spec.script, trees):
            in_sandbox.setdefault(path, []).append(name)
    entry = {h.uriHandlerScript for h in manifest.protocol_handlers if h.uriHandlerScript}
    entry |= {c.script for c in (getattr(manifest, "commands", None) or {}).values()}
    handler_files = set().union(*(_reachable(s, trees) for s in entry)) if entry else set()
    out.extend(_manifest_findings(manifest))
    for path in sorted(trees):
        lines = files[path].decode("utf-8", "replace").splitlines()
        if path in handler_files or path not in in_sandbox:
            out.extend(_check(path, trees[path], lines, "storage" in manifest.permissions, manifest.granted_hosts,
                              None, set(sandboxes)))
        for name in in_sandbox.get(path, ()):
            spec = sandboxes[name]
            out.extend(_check(path, trees[path], lines, "storage" in spec.permissions, spec.granted_hosts, name,
                              set(sandboxes)))
    return out


def _manifest_findings(manifest: Manifest) -> list[Finding]:
    """Content scripts and response filters need host permission for what they match (and filters the
    "responseFilter" permission): without it the gateway never runs them."""
    from protoreg.stores import covers

    hosts = list(manifest.granted_hosts)
    out: list[Finding] = []
    for i, entry in enumerate(getattr(manifest, "content_scripts", None) or ()):
        for pattern in entry.matches:
            if not covers(hosts, pattern):
                out.append(Finding("manifest.json", 0, f"content_scripts[{i}] matches {pattern} but no host "
                                                       f'permission covers it: add "{pattern}" to host_permissions'))
    for i, entry in enumerate(getattr(manifest, "response_filters", None) or ()):
        if "responseFilter" not in manifest.permissions:
            out.append(Finding("manifest.json", 0, f'response_filters[{i}] needs the "responseFilter" permission: '
                                                   'add it to "permissions"'))
        for pattern in entry.matches:
            if not covers(hosts, pattern):
                out.append(Finding("manifest.json", 0, f"response_filters[{i}] matches {pattern} but no host "
                                                       f'permission covers it: add "{pattern}" to host_permissions'))
    return out


def _check(path: str, tree: ast.AST, lines: list[str], storage: bool, hosts: list[str], sandbox: str | None,
           declared: set[str]) -> list[Finding]:
    patterns = [parse_pattern(p) for p in hosts]
    who = f"sandbox {sandbox}: " if sandbox else ""
    where = f"sandboxes.{sandbox}." if sandbox else ""
    out: list[Finding] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                for blocked, why in _BLOCKED_MODULES.items():
                    if name == blocked or name.startswith(blocked + "."):
                        out.append(Finding(path, node.lineno, f"{who}imports {name}: {why}"))
        elif isinstance(node, ast.Call):
            if PRAGMA in (lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""):
                continue
            name = _call_name(node)
            if name.endswith(("runtime.storage.get", "runtime.storage.set", "runtime.storage.delete",
                              "runtime.storage.keys", "runtime.data_dir")) and not storage:
                out.append(Finding(path, node.lineno, f'{who}calls {name} but the manifest lacks the "storage" '
                                                      f'permission: add "storage" to "{where}permissions"'))
            if name.endswith("runtime.sandbox"):
                arg = node.args[0] if node.args else None
                if sandbox is not None:
                    out.append(Finding(path, node.lineno, f"{who}calls runtime.sandbox, but only the extension's "
                                                          "handlers may message its sandboxes"))
                elif isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value not in declared:
                    out.append(Finding(path, node.lineno, f"messages the sandbox {arg.value!r}, which the manifest "
                                                          'does not declare: add it under "sandboxes"'))
            if name.endswith("runtime.fetch"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    try:
                        url = URL(arg.value)
                    except ValueError:
                        continue
                    if url.host and not any(p.matches(url) for p in patterns):
                        out.append(Finding(path, node.lineno, (
                            f"{who}fetches {arg.value}, which host_permissions does not grant: add "
                            f'"{url.scheme}://{url.host}/*" to {where}host_permissions')))
                elif not patterns:
                    out.append(Finding(path, node.lineno, f"{who}calls runtime.fetch but {where}host_permissions "
                                                          "is empty, so every fetch will be refused"))
    return out
