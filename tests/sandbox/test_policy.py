"""SandboxPolicy validation, SandboxReport queries, and the default read-only paths."""

from __future__ import annotations

import os
import sys
import sysconfig

import pytest

from protoreg.errors import SandboxError
from protoreg.sandbox import LayerStatus, SandboxPolicy, SandboxReport, default_read_paths


def test_an_invalid_policy_lists_every_problem_and_where_to_fix_it():
    with pytest.raises(SandboxError) as info:
        SandboxPolicy(read_paths=("relative/dir",), rlimit_cpu=0, rlimit_as=-5,
                      required=frozenset({"landlock", "warp-drive"}))
    message = str(info.value)
    for part in ("rlimit_as=-5", "rlimit_cpu=0", "unknown required layer(s) warp-drive", "'relative/dir'",
                 "WorkerConfig.sandbox"):
        assert part in message
    assert isinstance(info.value, OSError)


def test_the_report_answers_per_layer_and_serializes():
    report = SandboxReport((LayerStatus("landlock", True, "ABI 7"), LayerStatus("seccomp", False, "no table")))
    assert report.active("landlock") and not report.active("seccomp") and not report.active("unknown")
    assert report.get("seccomp") == LayerStatus("seccomp", False, "no table") and report.get("x") is None
    assert report.to_dict() == {"layers": [{"name": "landlock", "active": True, "detail": "ABI 7"},
                                           {"name": "seccomp", "active": False, "detail": "no table"}]}


def test_default_read_paths_cover_the_stdlib_site_packages_protoreg_and_the_bundle_but_not_home(tmp_path):
    paths = default_read_paths(tmp_path)
    assert os.path.realpath(tmp_path) == paths[-1]
    assert os.path.realpath(sysconfig.get_paths()["stdlib"]) in paths
    assert os.path.realpath(sysconfig.get_paths()["purelib"]) in paths
    assert any(p.endswith(os.sep + "protoreg") for p in paths)
    home = os.path.realpath(os.path.expanduser("~"))
    assert home not in paths and "/" not in paths and "/usr" not in paths
    assert os.path.realpath(sys.base_prefix) not in paths  # the bare prefix would expose bin/ and more
    assert all(os.path.isabs(p) for p in paths)
