"""Fixtures for worker tests: real worker processes running real handler scripts."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from protoreg.worker.config import WorkerConfig
from protoreg.worker.manager import WorkerManager


@dataclass
class _Handler:
    protocol: str
    uriHandlerScript: str | None


@dataclass
class _Manifest:
    protocol_handlers: list[_Handler]
    content_security_policy: Any = None


@dataclass
class BundleRecord:
    """What the worker runtime needs of an installed extension (the registry's Extension has the same fields)."""

    id: str
    files: dict[str, bytes]
    manifest: _Manifest
    root: Path = Path("/")
    name: str = "test"
    version: str = "1.0"
    extra: dict[str, Any] = field(default_factory=dict)


def bundle(script: str, *, scheme: str = "web+t", ext_id: str = "test@example.org",
           files: dict[str, str] | None = None, root: Path | None = None) -> BundleRecord:
    all_files = {"handler.py": textwrap.dedent(script).encode()}
    all_files.update({k: textwrap.dedent(v).encode() for k, v in (files or {}).items()})
    # An empty bundle directory: the worker's sandbox may read it and nothing of the test's files.
    return BundleRecord(ext_id, all_files, _Manifest([_Handler(scheme, "handler.py")]),
                        root=root or Path(tempfile.mkdtemp(prefix="protoreg-bundle-")))


@pytest.fixture
def make_bundle() -> Iterator[Callable[..., BundleRecord]]:
    """bundle(), each with its own empty directory, removed when the test ends (and checked to be gone)."""
    made: list[Path] = []

    def make(script: str, **kw: Any) -> BundleRecord:
        made.append(Path(tempfile.mkdtemp(prefix="protoreg-bundle-")))
        return bundle(script, root=made[-1], **kw)

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
    left = [d for d in made if d.exists()]
    assert not left, f"bundle directories left behind: {left}"


@pytest.fixture
async def manager() -> AsyncIterator[Callable[..., Any]]:
    made: list[WorkerManager] = []

    async def make(**config: Any) -> WorkerManager:
        m = WorkerManager(registry=None, config=WorkerConfig(**config))  # type: ignore[arg-type]
        await m.start()
        made.append(m)
        return m

    yield make
    for m in made:
        await m.close()


def head(url: str, method: str = "GET", headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return {"method": method, "url": url, "headers": headers or [], "origin": None}
