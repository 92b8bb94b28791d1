"""Embedding protoreg's schemes natively in a browser engine (today: QtWebEngine, :mod:`protoreg.embed.qt`).

The engine modules need optional dependencies, so they are imported explicitly (``import protoreg.embed.qt``); this
package holds only what needs no engine: the errors and :mod:`protoreg.embed.site` (what a browser shows as a page's
site identity).

::

    ProtoregError
    └── EmbedError(RuntimeError)          the engine can't be set up as asked (e.g. schemes registered too late)
        └── EngineUnavailable(ImportError) the engine's Python package is missing: names the extra to install
"""

from __future__ import annotations

from protoreg.errors import ProtoregError

__all__ = ["EmbedError", "EngineUnavailable"]


class EmbedError(ProtoregError, RuntimeError):
    """A browser engine can't be set up for protoreg's schemes as asked."""


class EngineUnavailable(EmbedError, ImportError):
    """The engine's Python bindings are not installed; the message names the pip extra that brings them."""

    def __init__(self, engine: str, extra: str, cause: BaseException | None = None) -> None:
        self.engine = engine
        self.extra = extra
        why = f" ({cause})" if cause is not None else ""
        super().__init__(f"protoreg.embed.{extra} needs {engine}, which is not installed{why}. "
                         f"Install it with: pip install 'protoreg[{extra}]'")
