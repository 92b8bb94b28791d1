#!/usr/bin/env python3
"""Set up and run protoreg from a fresh clone, needing only Python >= 3.11.

    python3 tasks.py demo     # set up, then run the main job: the gateway with the bundled sites
    python3 tasks.py test     # set up (including Chromium for browser tests), then run the test suite

Also:

    python3 tasks.py protoreg ARGS...   # the protoreg command line from .venv (check, fetch, ipfs import, ...)
    python3 tasks.py fuzz               # the hypothesis fuzz targets (tests/fuzz) with 10000 examples each

Extra arguments after ``test`` and ``fuzz`` go to pytest (``python3 tasks.py test -k origin``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
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


# Shared libraries QtWebEngine loads that a slim Debian may lack -> the Debian package that brings each.
QT_LIBRARIES = {
    "libnss3.so": "libnss3", "libnssutil3.so": "libnss3", "libsmime3.so": "libnss3", "libnspr4.so": "libnspr4",
    "libxkbcommon.so.0": "libxkbcommon0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libXcomposite.so.1": "libxcomposite1", "libXdamage.so.1": "libxdamage1", "libXrandr.so.2": "libxrandr2",
    "libgbm.so.1": "libgbm1", "libasound.so.2": "libasound2", "libxkbfile.so.1": "libxkbfile1",
    "libxshmfence.so.1": "libxshmfence1", "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3", "libXtst.so.6": "libxtst6", "libXfixes.so.3": "libxfixes3",
    "libX11-xcb.so.1": "libx11-xcb1", "libxcb-cursor.so.0": "libxcb-cursor0", "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0", "libglib-2.0.so.0": "libglib2.0-0", "libfreetype.so.6": "libfreetype6",
}


def _missing_qt_libraries() -> set[str]:
    """Libraries ``ldd`` reports missing for QtWebEngine's module and its helper process."""
    found = list((VENV / "lib").glob("python3*/site-packages/PySide6"))
    if not found or shutil.which("ldd") is None:
        return set()
    qt = found[0]
    env = {**os.environ, "LD_LIBRARY_PATH": str(qt / "Qt" / "lib")}
    missing = set()
    for binary in (qt / "QtWebEngineCore.abi3.so", qt / "Qt" / "libexec" / "QtWebEngineProcess",
                   qt / "Qt" / "plugins" / "platforms" / "libqoffscreen.so"):
        if binary.exists():
            out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
            missing |= {line.split()[0] for line in out.splitlines() if "not found" in line}
    return missing


def ensure_qt() -> None:
    """Install the ``qt`` extra (QtWebEngine for tests/embed) and the Debian libraries it needs, softly: when
    either fails, those tests skip with the reason."""
    stamp = VENV / ".protoreg-qt-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == want):
        _log("installing the qt extra (PySide6 with QtWebEngine) for tests/embed")
        try:
            _run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[qt]"])
            stamp.write_text(want)
        except subprocess.CalledProcessError as exc:
            _log(f"could not install the qt extra ({exc}); the QtWebEngine tests will be skipped")
            return
    missing = _missing_qt_libraries()
    if not missing:
        return
    packages = sorted({QT_LIBRARIES[lib] for lib in missing if lib in QT_LIBRARIES})
    apt = shutil.which("apt-get")
    if not packages or apt is None or os.geteuid() != 0:
        _log(f"QtWebEngine lacks {', '.join(sorted(missing))} and they can't be installed here; "
             "the QtWebEngine tests will be skipped")
        return
    _log(f"installing Debian packages {' '.join(packages)} for QtWebEngine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run([apt, "-o", "Acquire::Retries=3", "update", "-qq"], env=env)
        _run([apt, "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)
    except subprocess.CalledProcessError as exc:
        _log(f"could not install {' '.join(packages)} ({exc}); the QtWebEngine tests will be skipped")


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    ensure_chromium()
    ensure_qt()
    return subprocess.call([str(PY), "-m", "pytest", *args], cwd=ROOT)


def _call_quietly(cmd: list[str], **kw: object) -> int:
    """Run ``cmd``; Ctrl+C stops it (the child gets the SIGINT too and exits quietly) without a traceback here."""
    # While the child runs, SIGINT does nothing here (a Python handler, not SIG_IGN: exec resets it, so the child
    # keeps the default). Catching KeyboardInterrupt instead loses a race: the signal can be handled just after
    # wait() returned, outside any try.
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        proc = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_demo(args: list[str]) -> int:
    ensure_venv()
    return _call_quietly([str(BIN / "protoreg"), "serve", *args], cwd=ROOT)


def cmd_protoreg(args: list[str]) -> int:
    ensure_venv()
    return _call_quietly([str(BIN / "protoreg"), *args])


def cmd_fuzz(args: list[str]) -> int:
    ensure_venv()
    env = {**os.environ, "PROTOREG_FUZZ_EXAMPLES": os.environ.get("PROTOREG_FUZZ_EXAMPLES", "10000")}
    _log(f"fuzzing with {env['PROTOREG_FUZZ_EXAMPLES']} examples per target (PROTOREG_FUZZ_EXAMPLES)")
    return _call_quietly([str(PY), "-m", "pytest", "tests/fuzz", "--timeout=0", *args], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    commands = {"test": cmd_test, "demo": cmd_demo, "protoreg": cmd_protoreg, "fuzz": cmd_fuzz}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl+C during setup (pip, apt): stop without a traceback
        print(file=sys.stderr)
        sys.exit(130)
