"""Origin separation as Chromium sees it: every pair of these custom URLs, six mechanisms each.

Run with `python -m pytest examples/test_origin_matrix.py` (needs the system Chromium and playwright; skipped with
the install hint otherwise). A failure prints one table of the failing pairs and mechanisms."""

import pytest

from protoreg.testing.browser import check_origin_matrix

pytestmark = pytest.mark.browser

SITE = """
from protoreg import Response

async def handleRequest(request):
    if request.url.path == "/shared":  # a deliberate CORS opening, with credentials, for any origin that asks
        origin = request.headers.get("Origin", "")
        return Response("shared", headers={"Access-Control-Allow-Origin": origin,
                                           "Access-Control-Allow-Credentials": "true"})
    return Response("<!doctype html><title>page</title><p>a page", headers={"Content-Type": "text/html"})
"""


async def test_hosts_and_schemes_are_separate_origins(install_extension, protoreg_gateway, protoreg_browser):
    install_extension("web+a", SITE)
    install_extension("web+b", SITE)
    rows = await check_origin_matrix(protoreg_browser, protoreg_gateway,
                                     ["web+a://x/", "web+a://x/page", "web+a://y/", "web+b://x/shared"])
    assert len(rows) == 4 * 3 * 6
    # web+b://x/shared opted in to CORS, so the other origins may read it with credentials
    assert {r.observed for r in rows if r.target == "web+b://x/shared" and r.mechanism == "credentialed fetch"} \
        == {"readable"}
