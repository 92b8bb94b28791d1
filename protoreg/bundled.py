"""The extensions that ship with protoreg's source tree: the built-in handlers (``handlers/NAME``, e.g. the ipfs
extension) and the examples (``examples/NAME``, among them the demo). They are ordinary extension directories:
the library installs them as it installs any other and never imports their code."""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXAMPLES_DIR", "HANDLERS_DIR", "builtin_extension", "default_bundles"]

ROOT = Path(__file__).resolve().parents[1]
HANDLERS_DIR = ROOT / "handlers"
EXAMPLES_DIR = ROOT / "examples"


def builtin_extension(name: str) -> Path:
    """The directory of the built-in extension ``name`` (``ipfs``: the ipfs:// and ipns:// handlers)."""
    path = HANDLERS_DIR / name
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"no built-in extension {name!r} (looked for {path / 'manifest.json'})")
    return path


def default_bundles() -> list[Path]:
    """The built-in handlers and the bundled examples (the demo extension among them)."""
    found = [p.parent for p in sorted(HANDLERS_DIR.glob("*/manifest.json"))]
    found += [p.parent for p in sorted(EXAMPLES_DIR.glob("*/manifest.json"))]
    return found
