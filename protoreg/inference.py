"""Capability inference (as Jetpack's linker did): read a bundle's Python code and report the capabilities it
appears to use that its manifest does not grant, before anything runs. Static and best-effort: it sees direct
calls such as ``runtime.fetch("https://x/...")``, not URLs computed at run time."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from protoreg.manifest import Manifest
from protoreg.matchpatterns import parse_pattern

__all__ = ["Finding", "infer"]

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


def infer(files: Mapping[str, bytes], manifest: Manifest) -> list[Finding]:
    """Findings for every file of the bundle (relative path -> source bytes)."""
    storage = "storage" in manifest.permissions
    patterns = [parse_pattern(p) for p in manifest.granted_hosts]
    out: list[Finding] = []
    for path, source in sorted(files.items()):
        try:
            tree = ast.parse(source, filename=path)
        except SyntaxError as exc:
            out.append(Finding(path, exc.lineno or 0, f"syntax error: {exc.msg}"))
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    for blocked, why in _BLOCKED_MODULES.items():
                        if name == blocked or name.startswith(blocked + "."):
                            out.append(Finding(path, node.lineno, f"imports {name}: {why}"))
            elif isinstance(node, ast.Call):
                name = _call_name(node)
                if name.endswith(("runtime.storage.get", "runtime.storage.set", "runtime.storage.delete",
                                  "runtime.storage.keys", "runtime.data_dir")) and not storage:
                    out.append(Finding(path, node.lineno, f'calls {name} but the manifest lacks the "storage" '
                                                          'permission: add "storage" to "permissions"'))
                if name.endswith("runtime.fetch"):
                    arg = node.args[0] if node.args else None
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        try:
                            url = URL(arg.value)
                        except ValueError:
                            continue
                        if url.host and not any(p.matches(url) for p in patterns):
                            out.append(Finding(path, node.lineno, (
                                f"fetches {arg.value}, which host_permissions does not grant: add "
                                f'"{url.scheme}://{url.host}/*" to host_permissions')))
                    elif not patterns:
                        out.append(Finding(path, node.lineno, "calls runtime.fetch but host_permissions is empty, "
                                                              "so every fetch will be refused"))
    return out
