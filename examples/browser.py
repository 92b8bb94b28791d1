"""A small browser whose pages live on native custom origins: the bundled IPFS demo site at its ipfs:// URL.

    pip install 'protoreg[qt]'
    python examples/browser.py                  # opens ipfs://<the demo site's CID>/
    python examples/browser.py web+hello://x/   # or any URL of an installed scheme
    QT_QPA_PLATFORM=offscreen python examples/browser.py --screenshot shot.png   # render once, save, quit

Under the address bar, the site identity: the scheme, whether the origin is potentially trustworthy (a secure
context), which extension serves it and, when it was installed from a store, the store that signed it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import protoreg
from protoreg.bundled import builtin_extension
from protoreg.commands import path_input, run_command
from protoreg.embed import qt as pqt
from protoreg.embed.site import site_info

HERE = Path(__file__).resolve().parent
IPFS_BUNDLE = builtin_extension("ipfs")


def import_demo(reg: protoreg.Registry, ipfs: protoreg.Extension, state: Path) -> str:
    """Import the ipfs extension's demo site through its own ``ipfs import`` command (in its sandboxed worker,
    as ``protoreg serve`` does); returns the site's ipfs:// URL."""
    async def run() -> str:
        async with protoreg.Session(reg, state_dir=str(state)) as session:
            result = await run_command(session, ipfs.id, "ipfs", ["import"],
                                       path_input(IPFS_BUNDLE / "demo-site.car")[1])
        location = dict((k.lower(), v) for k, v in result.headers).get("location")
        if not result.ok or not location:
            raise SystemExit(f"the demo site was not imported: {result.output.decode('utf-8', 'replace')[:500]}")
        return location

    return asyncio.run(run())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="the page to open (default: the bundled IPFS demo site)")
    parser.add_argument("--screenshot", metavar="PNG", help="save the window once the page has loaded, then quit")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="protoreg-browser-"))
    reg = protoreg.Registry()
    ipfs = reg.install(IPFS_BUNDLE)
    reg.install(HERE / "hello-scheme")
    demo_url = import_demo(reg, ipfs, state)
    pqt.register_schemes(reg)  # before the QApplication exists

    from PySide6.QtCore import QTimer, QUrl
    from PySide6.QtWebEngineCore import QWebEngineProfile
    from PySide6.QtWebEngineWidgets import QWebEngineView
    from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QVBoxLayout, QWidget

    app = QApplication(sys.argv[:1])
    with pqt.QtRuntime(reg, config=protoreg.WorkerConfig(state_dir=str(state))) as runtime:
        profile = QWebEngineProfile("protoreg-example")  # named: its own storage, apart from other Qt apps
        profile.setPersistentStoragePath(str(state / "profile"))
        pqt.install(profile, runtime)

        window = QWidget()
        window.setWindowTitle("protoreg browser")
        window.resize(1000, 720)
        address = QLineEdit()
        identity = QLabel()
        from PySide6.QtWebEngineCore import QWebEnginePage

        view = QWebEngineView()
        view.setPage(QWebEnginePage(profile, view))
        layout = QVBoxLayout(window)
        layout.setContentsMargins(6, 6, 6, 6)
        for widget in (address, identity, view):
            layout.addWidget(widget)
        layout.setStretch(2, 1)

        def show_identity(url: QUrl) -> None:
            text = url.toString()
            address.setText(text)
            info = site_info(reg, text)
            who = (f"served by {info.extension_name} ({info.extension_id}), "
                   + (f"signed by store {info.store}" if info.store else "unsigned (development install)")
                   if info.extension_id else "not a protoreg scheme")
            trust = "Secure: potentially trustworthy origin" if info.trustworthy else "Not secure"
            identity.setText(f"{trust} · scheme {info.scheme}: · origin {info.origin} · {who}")
            background = "#eef4ee" if info.trustworthy else "#fdf0ee"
            identity.setStyleSheet(f"padding: 4px 6px; color: #1d1d1f; background: {background}; border-radius: 4px")

        view.urlChanged.connect(show_identity)
        address.returnPressed.connect(lambda: view.load(QUrl(address.text().strip())))
        if args.screenshot:
            def save(ok: bool) -> None:
                def grab() -> None:
                    window.grab().save(args.screenshot)
                    app.quit()
                QTimer.singleShot(700, grab)  # let images and fonts settle
            view.loadFinished.connect(save)
            QTimer.singleShot(30_000, app.quit)
        view.load(QUrl(args.url or demo_url))
        window.show()
        code = app.exec()
        view.setPage(None)  # the page must go before its profile
        app.processEvents()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
