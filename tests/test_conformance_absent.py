"""Without ../shared the suite still runs: every test that reads the conformance data skips with its reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

USERS = ["tests/policy/test_trust.py", "tests/policy/test_urls.py", "tests/policy/test_urls_parser.py",
         "tests/policy/test_csp.py",
         "tests/handlers/ipfs/test_car.py",
         "tests/handlers/ipfs/test_unixfs.py", "tests/handlers/ipfs/test_gateway.py"]


@pytest.mark.slow
def test_the_conformance_tests_skip_with_their_reason_when_the_data_is_absent(tmp_path):
    missing = tmp_path / "no-shared" / "conformance"
    env = {**os.environ, "PROTOREG_CONFORMANCE_DIR": str(missing), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *USERS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    summary = out.strip().splitlines()[-1]
    assert "error" not in summary and "failed" not in summary, summary
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert int(re.search(r"(\d+) skipped", summary).group(1)) >= 6
    assert skipped and all(f"conformance data {missing}" in line and "is absent" in line for line in skipped), skipped

