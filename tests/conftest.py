"""Shared fixtures: the external conformance data in ../shared/conformance (skipped with a reason if absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT.parent / "shared" / "conformance"


def conformance_path(*parts: str) -> Path:
    """Path of a conformance file; skips the calling test with a clear reason when it is missing."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"conformance data {path} is absent: clone the project with ../shared beside it to run this test")
    return path


def load_conformance_json(*parts: str) -> Any:
    return json.loads(conformance_path(*parts).read_text(encoding="utf-8"))


def conformance_cases(*parts: str) -> list[Any]:
    """Cases for ``pytest.mark.parametrize`` at collection time; a single skipped param when the data is absent."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"conformance data {path} is absent: clone the project with ../shared beside it"))]
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("cases", data.get("tests", data))
    return [c for c in data if not isinstance(c, str)]
