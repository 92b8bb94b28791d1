"""protoreg.embed.qt in a real QtWebEngine (offscreen): native origins, CORS, streaming, ranges, errors, headers.

One engine run (``tests/embed/qt_driver.py`` in a subprocess: one QApplication per process) answers every test
here; each test checks what the pages themselves observed. Skipped with the reason when PySide6 or the engine is
missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIG = 64 << 20
MEDIA = bytes(range(256)) * 4


@pytest.fixture(scope="module")
def qt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("PySide6.QtWebEngineCore",
                        reason="PySide6 with QtWebEngine is not installed: pip install 'protoreg[qt]'")
    state = tmp_path_factory.mktemp("qt")
    out = state / "out.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox --disable-gpu --disable-logging"}
    if os.geteuid() == 0:  # Chromium's own sandbox refuses to run as root
        env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
    proc = subprocess.run([sys.executable, "-m", "tests.embed.qt_driver", str(state), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=110)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0 and not out.exists():
        pytest.skip(f"QtWebEngine could not start here (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    results = json.loads(out.read_text())
    for name, value in results.items():
        if isinstance(value, dict) and "driver_error" in value:
            pytest.fail(f"scenario {name} failed in the driver:\n{value['driver_error']}")
    return results


def ok(value: dict[str, Any]) -> Any:
    assert "error" not in value, value
    return value["ok"]


def test_demo_site_loads_at_its_ipfs_url_with_images_and_relative_links(qt):
    demo, root = qt["demo"], qt["demo_root"]
    page = ok(demo["page"])
    assert demo["loaded"] and page["origin"] == f"ipfs://{root}"
    assert "A site on ipfs://" in page["h1"]
    assert page["images"] and all(width > 0 for width in page["images"])
    assert page["maxWidth"] == "672px"  # the site's stylesheet applied
    assert "docs/" in page["links"]
    assert demo["docs_loaded"] and demo["docs_url"] == f"ipfs://{root}/docs/"
    assert ok(demo["docs"]) == {"h1": "Docs", "origin": f"ipfs://{root}"}


def test_each_host_is_its_own_secure_origin_with_its_own_storage(qt):
    o = qt["origins"]
    a, b, again = ok(o["a_before"]), ok(o["b"]), ok(o["a_again"])
    assert (a["origin"], a["secure"]) == ("web+qtest://a", True)
    assert (b["origin"], b["secure"]) == ("web+qtest://b", True)
    assert ok(o["a_write"]) == "written by a"
    assert b["stored"] is None            # b can't see a's localStorage
    assert again["stored"] == "written by a"
    assert a["idb"] == 1 and b["idb"] == 1  # IndexedDB works on both (a fresh database each)
    assert again["cookie"] == ""          # engine limitation: cookies are not stored for custom schemes
    assert ok(o["iframe"]).startswith("blocked: SecurityError")  # no DOM access into a cross-origin frame


def test_cross_origin_fetch_is_blocked_without_cors_and_allowed_with_it(qt):
    c = qt["cors"]
    blocked = ok(c["cross_without_cors"])
    assert blocked["text"] == "" and blocked["blocked"] == "403"  # no byte of b's private answer reaches a
    assert ok(c["cross_with_cors"]) == {"status": 200, "blocked": None, "text": "shared by b"}
    assert ok(c["same_origin"])["text"] == "private to a"
    assert ok(c["cross_image"]) == "loaded 7"  # an <img> is not a CORS read: it still loads cross-origin


def test_a_64_mib_body_streams_through_intact(qt):
    big = ok(qt["stream"]["big"])
    # The page sums byte*offset at every 4096th offset; the handler's byte at offset o is (o // 65536) % 251.
    expected = sum(((o >> 16) % 251) * o for o in range(0, BIG, 4096)) % 1_000_000_007
    assert big["status"] == 200 and big["length"] == BIG
    assert big["sum"] == expected
    assert big["ms"] < 20_000
    # Streamed, not buffered: at most the 1 MiB high-water mark plus the chunk that crossed it (the worker's IPC
    # may merge the handler's 64 KiB chunks) is ever queued for the engine, not the 64 MiB body.
    assert 0 < qt["stream"]["peak_queued"] <= 2 << 20


@pytest.mark.parametrize("path", ["/media", "/whole"])  # the handler answers the Range (206) / ignores it (200)
@pytest.mark.parametrize(("spec", "first", "last"), [("bytes=10-19", 10, 19), ("bytes=-5", 1019, 1023),
                                                      ("bytes=1000-", 1000, 1023)])
def test_range_requests_get_exactly_the_requested_bytes(qt, path, spec, first, last):
    got = ok(qt["stream"][f"{path} {spec}"])
    assert got["status"] == 206
    assert got["range"] == f"bytes {first}-{last}/{len(MEDIA)}"
    assert bytes(got["body"]) == MEDIA[first:last + 1]


def test_a_handler_error_is_shown_as_protoreg_error_page(qt):
    e = qt["errors"]
    boom = ok(e["boom"])
    assert e["boom_loaded"] and boom["origin"] == "web+qtest://a"
    assert boom["title"].startswith("500")
    assert "exploded on purpose" in boom["text"] and "qt-test@protoreg" in boom["text"]
    assert ok(e["missing"]) == "nothing here"  # a handler's own 404 page is shown as it is
    assert ok(e["fetch_boom"]) == {"status": 200, "text": "", "blocked": "500"}
    assert ok(e["fetch_missing"])["blocked"] == "404"


def test_a_handler_that_never_answers_gets_a_timeout_page(qt):
    e = qt["errors"]
    assert e["hang_loaded"] and e["hang_seconds"] < 10
    assert "504" in ok(e["hang"]) and "did not answer" in ok(e["hang"])


def test_redirects_are_followed(qt):
    e = qt["errors"]
    assert e["redirect_loaded"] and e["redirect_url"] == "web+qtest://a/next"
    got = ok(e["fetch_redirect"])
    assert got["redirected"] and got["url"] == "web+qtest://a/next" and "next page" in got["text"]


def test_uploads_reach_the_handler_and_oversized_ones_are_refused(qt):
    r = qt["requests"]
    assert ok(r["upload"]) == "echo:hello upload"
    assert ok(r["upload_too_large"]) == {"status": 200, "blocked": "413", "length": 0}


def test_an_aborted_load_cancels_the_fetch_and_leaves_nothing_running(qt):
    a = qt["abort"]
    assert ok(a["first"]) == "first chunk\n"
    assert a["active_after"] == 0


async def test_policy_headers_are_the_gateways_for_the_same_response(qt, aiohttp_client):
    from yarl import URL

    import protoreg
    from protoreg.gateway import create_app
    from protoreg.gateway.hosts import to_gateway_url

    reg = protoreg.Registry()
    ext = reg.install(ROOT / "tests" / "embed" / "qt_ext")
    client = await aiohttp_client(create_app(reg))
    gw = URL(str(to_gateway_url(URL("web+qtest://a/headers"), "localhost:8080", ext.id)))
    resp = await client.get("/headers", headers={"Host": gw.raw_authority})
    assert resp.status == 200
    gateway = {k.lower(): v for k, v in resp.headers.items()
               if k.lower() not in ("content-length", "date", "server", "origin-agent-cluster")}
    in_qt = dict(ok(qt["requests"]["headers"]))
    # Same names and values; the engine lowercases values and joins repeated headers with ", ".
    assert set(in_qt) == set(gateway)
    for name, value in gateway.items():
        assert in_qt[name] == ", ".join(v.lower() for v in resp.headers.getall(name)) or in_qt[name] == value.lower()
    assert in_qt["x-content-type-options"] == "nosniff"
    assert "origin-agent-cluster" not in in_qt  # dropped on purpose: it crashed the engine (docs/embedding.md)


def test_the_example_browser_opens_the_demo_site_and_shows_its_identity(qt, tmp_path):
    shot = tmp_path / "browser.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox --disable-gpu"}
    if os.geteuid() == 0:
        env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "browser.py"), "--screenshot", str(shot)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PySide6.QtGui import QImage

    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 600


def test_registering_schemes_after_the_application_started_is_a_clear_error(qt):
    assert qt["late_register"].startswith("EmbedError: ")
    assert "before the QApplication is created" in qt["late_register"]
