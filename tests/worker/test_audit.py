"""protoreg/worker/audit.py: the lines that explain sandbox denials, and the ones it must not write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_with_hook(code: str) -> str:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from protoreg.worker import audit
        audit.install("probe@test", read_paths=[sys.prefix, sys.base_prefix], write_paths=[])
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return done.stderr


def test_a_missed_import_listing_sys_path_entries_is_not_reported(tmp_path):
    on_path, elsewhere = tmp_path / "on_path", tmp_path / "elsewhere"
    on_path.mkdir()
    elsewhere.mkdir()
    err = run_with_hook(f"""
        import os
        sys.path.insert(0, {str(on_path)!r})
        try:
            import protoreg_no_such_module
        except ImportError:
            pass
        os.listdir({str(elsewhere)!r})
    """)
    assert f"tried to read {elsewhere}" in err  # the hook is live: a handler's own listing is explained
    assert str(on_path) not in err, err


def test_opening_a_file_in_a_sys_path_directory_is_still_reported(tmp_path):
    (tmp_path / "secret.txt").write_text("x")
    err = run_with_hook(f"""
        sys.path.insert(0, {str(tmp_path)!r})
        open({str(tmp_path / "secret.txt")!r}).read()
    """)
    assert f"tried to read {tmp_path / 'secret.txt'}" in err
