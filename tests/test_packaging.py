"""Packaging metadata that installs without deprecation warnings."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT


def test_the_license_is_an_spdx_expression_and_the_build_backend_supports_it():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["license"] == "MIT"  # not the deprecated {text = ...} table
    (setuptools,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77  # PEP 639 license expressions
    assert not any(c.startswith("License ::") for c in data["project"].get("classifiers", []))
