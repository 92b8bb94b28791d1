"""Shared fixtures: the external conformance data in ../shared/conformance (skipped with a reason if absent)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/conformance beside the clone; PROTOREG_CONFORMANCE_DIR points elsewhere (the suite's own test of
#: "runs without it" sets it to a missing directory).
CONFORMANCE = Path(os.environ.get("PROTOREG_CONFORMANCE_DIR") or ROOT.parent / "shared" / "conformance")


def conformance_path(*parts: str) -> Path:
    """Path of a conformance file; skips the calling test with a clear reason when it is missing."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"conformance data {path} is absent: clone the project with ../shared beside it to run this test")
    return path


def load_conformance_json(*parts: str) -> Any:
    return json.loads(conformance_path(*parts).read_text(encoding="utf-8"))


def conformance_cases(*parts: str, where: Callable[[Any], bool] | None = None) -> list[Any]:
    """Cases for ``pytest.mark.parametrize`` at collection time (those ``where`` keeps); a single skipped param
    when the data is absent, so callers never see the placeholder: filter with ``where``, not afterwards."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(
            reason=f"conformance data {path} is absent: clone the project with ../shared beside it"))]
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("cases", data.get("tests", data))
    return [c for c in data if not isinstance(c, str) and (where is None or where(c))]
