"""The protoreg_browser fixture and check_origin_matrix, run through pytester like a user's test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]

HEADER = '''
import pytest
from protoreg.testing.browser import check_origin_matrix

SITE = """
from protoreg import Response
async def handleRequest(request):
    return Response("<!doctype html><title>t</title>", headers={"Content-Type": "text/html"})
"""
'''


@pytest.fixture(autouse=True)
def _this_tree(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the subprocess imports the protoreg under test


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=HEADER + body)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", timeout=300)


@pytest.mark.browser
def test_browser_fixture_opens_custom_origins_and_the_matrix_passes(pytester):
    result = run(pytester, '''
async def test_page(install_extension, protoreg_gateway, protoreg_browser):
    install_extension("web+a", SITE)
    page = await protoreg_browser.new_page()
    await page.goto(protoreg_gateway.url("x", "web+a"))
    assert await page.title() == "t" and await page.evaluate("window.isSecureContext")

async def test_matrix(install_extension, protoreg_gateway, protoreg_browser):
    install_extension("web+a", SITE)
    install_extension("web+b", SITE)
    rows = await check_origin_matrix(protoreg_browser, protoreg_gateway, ["web+a://x/", "web+a://x/2", "web+b://x/"])
    assert len(rows) == 3 * 2 * 6 and all(r.ok for r in rows)
    assert {r.observed for r in rows if r.page == "web+a://x/" and r.target == "web+a://x/2"} == {"shared", "readable"}
''')
    result.assert_outcomes(passed=2)


@pytest.mark.browser
def test_matrix_failure_is_one_table_of_failing_pairs_and_mechanisms(pytester):
    # a registry that wrongly calls two hosts one origin stands in for a broken gateway: the browser disagrees
    result = run(pytester, '''
async def test_matrix(install_extension, protoreg_gateway, protoreg_browser, protoreg_registry):
    install_extension("web+a", SITE)
    real = protoreg_registry.origin
    protoreg_registry.origin = lambda url: real("web+a://one/")
    await check_origin_matrix(protoreg_browser, protoreg_gateway, ["web+a://x/", "web+a://y/"])
''')
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "origin separation failed for 12 of 12 checks" in out
    assert "from        to          mechanism           expected  observed" in out
    for mechanism in ("cookies", "localStorage", "IndexedDB", "service workers", "DOM access"):
        assert f"web+a://x/  web+a://y/  {mechanism}" in out
    assert "web+a://y/  web+a://x/  credentialed fetch  readable  blocked" in out


def test_browser_fixture_skips_with_the_install_hint_without_chromium(pytester, monkeypatch):
    monkeypatch.setenv("PATH", str(pytester.path))  # no chromium on PATH
    result = run(pytester, '''
async def test_needs_browser(protoreg_browser):
    raise AssertionError("not reached")
''')
    result.assert_outcomes(skipped=1)
    assert "Chromium is not installed: install the system Chromium" in result.stdout.str()


@pytest.mark.browser
def test_origin_matrix_example_passes():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "examples" / "test_origin_matrix.py")], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
