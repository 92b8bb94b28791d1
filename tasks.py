#!/usr/bin/env python3
"""Set up and run protoreg from a fresh clone, needing only Python >= 3.11.

    python3 tasks.py demo     # set up, then run the main job: the gateway with the bundled sites
    python3 tasks.py test     # set up (including Chromium for browser tests), then run the test suite

Extra arguments after ``test`` go to pytest (``python3 tasks.py test -k origin``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _log(msg: str) -> None:
    print(f"[tasks] {msg}", flush=True)


def _run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def ensure_venv() -> None:
    """Create .venv and install protoreg with its test extras, once per pyproject.toml content."""
    if sys.version_info < (3, 11):
        sys.exit(f"protoreg needs Python >= 3.11; this is {sys.version.split()[0]}. Run it with python3.11 or newer.")
    if not PY.exists():
        _log(f"creating virtual environment in {VENV.name}/")
        _run([sys.executable, "-m", "venv", str(VENV)])
    stamp = VENV / ".protoreg-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    _log("installing protoreg and its dependencies (pip install -e '.[test,dev]')")
    _run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    _run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,dev]"])
    stamp.write_text(want)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> None:
    """Install Debian's chromium + chromium-driver for the browser tests when missing and we can."""
    if find_chromium():
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        _log("chromium is not installed and cannot be installed here (needs root and apt-get); "
             "browser tests will be skipped. Install the Debian packages 'chromium' and 'chromium-driver' to run them.")
        return
    _log("installing Debian packages chromium and chromium-driver for the browser tests")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run([apt, "-o", "Acquire::Retries=3", "update", "-qq"], env=env)
        _run([apt, "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"], env=env)
    except subprocess.CalledProcessError as exc:
        _log(f"could not install chromium ({exc}); browser tests will be skipped")


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    ensure_chromium()
    return subprocess.call([str(PY), "-m", "pytest", *args], cwd=ROOT)


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    return subprocess.call([str(BIN / "protoreg"), "serve", *args], cwd=ROOT)


def main(argv: list[str]) -> int:
    commands = {"test": cmd_test, "demo": cmd_demo}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
