"""Import a bundle's Python code from the verified bytes the parent sent, never from disk.

The parent read and hashed every ``*.py`` file of the bundle at install time and sends those bytes in INIT. The
handler script is executed from them, and ``import helper`` inside the script resolves against the same bytes: the
import roots are the script's own directory (as when Python runs a script) and the bundle root. A file changed on
disk after install therefore changes nothing until the extension is reinstalled.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import linecache
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType

__all__ = ["BundleFinder", "load_script"]


class BundleFinder:  # a meta path finder and loader by protocol (importlib.abc imports tempfile, shutil, bz2, lzma)
    """A meta-path finder serving modules from an in-memory ``{relative/path.py: bytes}`` mapping."""

    def __init__(self, files: Mapping[str, bytes], label: str) -> None:
        self._files = dict(files)
        self._label = label  # shown in tracebacks: "<label>/relative/path.py"
        self._roots: list[str] = [""]

    def add_root(self, root: str) -> None:
        root = root.strip("/")
        if root not in self._roots:
            self._roots.insert(0, root)

    def filename(self, path: str) -> str:
        return f"{self._label}/{path}"

    def _locate(self, fullname: str) -> tuple[str, bool] | None:
        rel = fullname.replace(".", "/")
        for root in self._roots:
            base = f"{root}/{rel}" if root else rel
            if f"{base}/__init__.py" in self._files:
                return f"{base}/__init__.py", True
            if f"{base}.py" in self._files:
                return f"{base}.py", False
            prefix = base + "/"
            if any(p.startswith(prefix) for p in self._files):
                return base, True  # a directory of modules without __init__.py: a namespace-style package
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        found = self._locate(fullname)
        if found is None:
            return None
        rel, is_pkg = found
        spec = importlib.util.spec_from_loader(fullname, self, origin=self.filename(rel), is_package=is_pkg)
        if spec is not None:
            spec.has_location = True
            if is_pkg:
                spec.submodule_search_locations = []
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        origin = module.__spec__.origin if module.__spec__ else None
        rel = (origin or "")[len(self._label) + 1 :]
        source = self._files.get(rel)
        if source is None:  # namespace-style package: nothing to run
            return
        self._exec(module, rel, source)

    def _exec(self, module: ModuleType, rel: str, source: bytes) -> None:
        filename = self.filename(rel)
        text = source.decode("utf-8")
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 (verified bytes)


def load_script(finder: BundleFinder, path: str, module_name: str) -> ModuleType:
    """Execute the handler script at ``path`` (relative to the bundle) from the verified bytes."""
    source = finder._files.get(path)
    if source is None:
        raise FileNotFoundError(f"{path} is not among the bundle's verified files")
    directory = path.rpartition("/")[0]
    if directory:
        finder.add_root(directory)
    if finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)
    module = ModuleType(module_name)
    module.__spec__ = importlib.util.spec_from_loader(module_name, finder, origin=finder.filename(path))
    sys.modules[module_name] = module
    finder._exec(module, path, source)
    return module
