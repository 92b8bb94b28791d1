"""Regenerate the screenshots in docs/ through a real gateway in headless Chromium.

    .venv/bin/python docs/screenshots.py

Starts a gateway on a free loopback port with a throwaway state directory (the bundled demo site, a sample
directory without index.html for the listing, and a handler that fails on purpose), then saves:
docs/dashboard.png, docs/error-page.png (the gateway's page for a failing handler), docs/ipfs-error-page.png (the
ipfs handler's own 404) and docs/listing.png (an ipfs directory listing).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import protoreg  # noqa: E402
from protoreg.gateway import create_app  # noqa: E402
from protoreg.testing import write_extension  # noqa: E402
from protoreg.worker.config import WorkerConfig  # noqa: E402
from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE, ipfs_core, store_for  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
BROKEN = """
async def handleRequest(request):
    prices = {"apples": 3}
    return prices["pears"]   # a bug: the gateway shows a clean 502 page, the worker keeps serving
"""


def _sample_site(root: Path) -> None:
    (root / "photos" / "2026").mkdir(parents=True)
    (root / "README.md").write_text("# A sample directory\n\nServed from the local, verified block store.\n")
    (root / "notes.txt").write_text("hello\n" * 40)
    (root / "dataset-with-a-rather-long-descriptive-file-name-2026-11-23.csv").write_text("a,b\n1,2\n" * 9000)
    (root / "photos" / "cover.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "archive.bin").write_bytes(bytes(range(256)) * 6000)


async def main() -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Chromium (the Debian package 'chromium')")
    with tempfile.TemporaryDirectory(prefix="protoreg-shots-") as tmp:
        tmp_path = Path(tmp)
        state = tmp_path / "state"
        reg = protoreg.Registry()
        ipfs = reg.install(IPFS_BUNDLE)
        reg.install(ROOT / "examples" / "hello-scheme")
        reg.install(write_extension(tmp_path / "shop", scheme="web+shop", ext_id="shop@example.org", script=BROKEN))
        core = ipfs_core()
        store = store_for(ipfs, state)
        with DEMO_CAR.open("rb") as f:
            demo = core.cids.v1_base32(core.car.import_car(f, store).roots[0])
        _sample_site(tmp_path / "site")
        built = core.importer.add_path(tmp_path / "site", store.put)
        listing = core.cids.v1_base32(built.cid)

        app = create_app(reg, config=WorkerConfig(state_dir=str(state)))
        app["protoreg_examples"] = {"ipfs": f"ipfs://{demo}/"}
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        await web.TCPSite(runner, "127.0.0.1", port).start()
        shots = {
            "listing.png": (f"http://{listing}.ipfs.localhost:{port}/", 1000, 500),
            "ipfs-error-page.png": (f"http://{listing}.ipfs.localhost:{port}/photos/2025/", 1000, 440),
            "error-page.png": (f"http://cart.web-shop.localhost:{port}/checkout", 1000, 540),
            "dashboard.png": (f"http://localhost:{port}/", 1200, 1500),
        }
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=chromium, args=FLAGS)
                for name, (url, width, height) in shots.items():
                    page = await browser.new_page(viewport={"width": width, "height": height})
                    await page.goto(url)
                    await page.screenshot(path=str(ROOT / "docs" / name), full_page=True)
                    print(f"docs/{name} <- {url}")
                    await page.close()
                await browser.close()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
