"""Layering: the library never reaches into an extension bundle. A built-in extension (handlers/NAME) is an
ordinary extension: the host installs it, runs its handlers and its commands in its sandboxed worker, and never
imports its modules (ipfs_core and the like) or puts its directories on sys.path. Tests may; protoreg/ may not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "protoreg"
#: Top-level module names that live in extension bundles: every package or module directly in a bundle directory.
BUNDLE_MODULES = frozenset(
    {"handlers", "protocol"}
    | {p.stem for bundle in (ROOT / "handlers").iterdir() if bundle.is_dir()
       for p in bundle.iterdir() if p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py")))})
SYS_PATH_EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\b|\[[^\]]*\]\s*=|\+=)")
SOURCES = sorted(LIBRARY.rglob("*.py"))
#: The one sys.path edit the library makes, and what it points at: the worker's boot line (run with -I) puts the
#: directory that holds the protoreg package itself first, passed as _PKG_PARENT.
ALLOWED_SYS_PATH = {"protoreg/worker/process.py": "sys.path.insert(0, sys.argv.pop(1))"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr in ("import_module", "__import__"))
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def test_the_bundle_module_names_are_known():
    assert {"ipfs_core", "protocol", "handlers"} <= BUNDLE_MODULES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_imports_an_extension_bundles_code(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {name}" for line, name in _imported(tree)
           if name.split(".")[0] in BUNDLE_MODULES]
    assert not bad, "the library must not import an extension's modules; run them as its commands instead:\n" + \
        "\n".join(bad)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_puts_a_bundle_directory_on_sys_path(path):
    text = path.read_text(encoding="utf-8")
    allowed = ALLOWED_SYS_PATH.get(str(path.relative_to(ROOT)))
    bad = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
           if SYS_PATH_EDIT.search(line) and not (allowed and allowed in line)]
    assert not bad, "the library must not edit sys.path (to reach an extension bundle's modules):\n" + "\n".join(bad)
    assert "ipfs_core" not in text, f"{path.relative_to(ROOT)} names the ipfs bundle's private package ipfs_core"


def test_the_allowed_sys_path_edit_is_protoregs_own_directory():
    text = (LIBRARY / "worker" / "process.py").read_text(encoding="utf-8")
    assert "_PKG_PARENT = " in text and "_BOOT, _PKG_PARENT," in text
    from protoreg.worker import process

    assert Path(process._PKG_PARENT).resolve() == LIBRARY.parent.resolve()
    assert not (Path(process._PKG_PARENT) / "protoreg").resolve().is_relative_to(ROOT / "handlers")


def test_the_checks_catch_what_they_are_for():
    sample = ("import ipfs_core.car\nfrom handlers.ipfs import x\nimportlib.import_module('ipfs_core')\n"
              "import protoreg.policy.urls\n")
    names = [name for _, name in _imported(ast.parse(sample))]
    assert [n for n in names if n.split(".")[0] in BUNDLE_MODULES] == ["ipfs_core.car", "handlers.ipfs", "ipfs_core"]
    for line in ("sys.path.insert(0, str(BUNDLE))", "sys.path.append(p)", "sys.path[:0] = [p]", "sys.path += [p]"):
        assert SYS_PATH_EDIT.search(line), line
    assert not SYS_PATH_EDIT.search("if p not in sys.path:")
