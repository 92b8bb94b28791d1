"""The dashboard's grant controls in Chromium: clicking allow/deny/revoke and answering a prompt changes the
profile's decisions; a page on a custom origin, or on another port of localhost, that posts to the dashboard (a
form submitted by script, and fetch with no-cors) changes nothing, even holding the real token. Decisions are
checked from outside: in the profile."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path

import pytest
from aiohttp import web

from protoreg import Profile
from protoreg.gateway import create_app
from protoreg.gateway import grants as panels
from protoreg.gateway.hosts import to_gateway_url
from protoreg.permissions import Grantee, wait_for_dashboard
from protoreg.session import Session
from protoreg.testing import write_extension
from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EXT = "notes@example.org"
NOTES = """
from protoreg import Response, runtime
from protoreg.errors import PermissionDenied

async def handleRequest(request):
    try:
        await runtime.storage.set("last", request.url.path)
    except PermissionDenied as e:
        return Response(str(e), status=403)
    return Response("<!doctype html><title>stored</title>", headers={"Content-Type": "text/html"})
"""
ATTACK_PAGE = """<!doctype html><title>attack</title>
<form id=f method=post><input name=token><input name=extension><input name=permission><input name=action></form>
<script>
const c = Object.fromEntries(new URLSearchParams(location.search));
const target = c.dash + '_protoreg/decide';
const fields = {token: c.token, extension: c.extension, permission: c.permission, action: 'revoke'};
fetch(target, {method: 'POST', mode: 'no-cors', body: new URLSearchParams(fields)})
  .then(() => { document.title = 'fetched'; }, () => { document.title = 'fetch failed'; })
  .finally(() => {
    const f = document.getElementById('f');
    f.action = target;
    for (const [k, v] of Object.entries(fields)) f.elements[k].value = v;
    f.submit();
  });
</script>"""
ATTACKER = f'''
from protoreg import Response

PAGE = {ATTACK_PAGE!r}

async def handleRequest(request):
    return Response(PAGE, headers={{"Content-Type": "text/html"}})
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, profile: Profile, session: Session, port: int) -> None:
        self.profile, self.session, self.port = profile, session, port
        self.dashboard = f"http://localhost:{port}/"

    def decision(self, ext_id: str = EXT, perm: str = "storage"):
        """The decision as the profile holds it (a fresh reader, like the CLI)."""
        fresh = Profile(self.profile.path)
        return fresh.decisions().decision(Grantee.from_record(ext_id, fresh.grants(ext_id)), perm)

    def url(self, custom: str) -> str:
        reg = self.session.registry
        url = reg.resolve(custom)
        return str(to_gateway_url(url, f"localhost:{self.port}", reg.lookup(url.scheme).extension.id))


@pytest.fixture
async def served(tmp_path):
    profile = Profile(tmp_path / "profile")
    profile.install_unsigned(write_extension(tmp_path / "notes", scheme="web+notes", script=NOTES, ext_id=EXT,
                                             name="Notes", permissions=["storage"],
                                             host_permissions=["https://api.example.org/*"]), accept_risk=True)
    profile.install_unsigned(write_extension(tmp_path / "evil", scheme="web+evil", script=ATTACKER,
                                             ext_id="site@example.net", trustworthy=True), accept_risk=True)
    reg = profile.registry()
    session = Session(reg, profile=profile, on_prompt=wait_for_dashboard)
    runner = web.AppRunner(create_app(reg, session=session))
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Served(profile, session, port)
    await runner.cleanup()
    await session.close()


@pytest.fixture
async def other_port():
    """A page of another port of localhost (same site as the dashboard, another origin)."""
    async def page(request):
        return web.Response(text=ATTACK_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://localhost:{port}/"
    await runner.cleanup()


async def test_grant_controls_change_the_profiles_decisions(served, browser):
    page = await browser.new_page()
    await page.goto(served.dashboard)
    form = page.locator(f'form[data-extension="{EXT}"][data-permission="storage"]')
    await form.locator("button[value=deny]").click()
    await page.wait_for_load_state()
    assert page.url.endswith("/#grants")
    assert (served.decision().state, served.decision().source) == ("deny", "user")
    await form.locator("select[name=expires]").select_option("1h")
    await form.locator("button[value=allow]").click()
    await page.wait_for_load_state()
    dec = served.decision()
    assert dec.state == "allow" and isinstance(dec.expires, float)
    assert "allowed</span>" in await page.content()
    await form.locator("button[value=revoke]").click()
    await page.wait_for_load_state()
    assert served.decision().state == "deny" and served.decision().expires is None
    # the revoke reaches the extension at its next call
    await page.goto(served.url("web+notes://n/x"))
    assert "storage is denied" in await page.inner_text("body")


async def test_a_prompt_is_answered_by_clicking(served, browser):
    served.profile.decisions().decide(Grantee.from_record(EXT, served.profile.grants(EXT)), "storage", "prompt")
    call = asyncio.ensure_future(served.session.fetch("web+notes://n/pending"))
    for _ in range(200):
        if served.session.permissions.pending():
            break
        await asyncio.sleep(0.02)
    page = await browser.new_page()
    await page.goto(served.dashboard)
    assert "asks to use storage" in await page.inner_text("#prompts + .prompt-card")
    await page.click(".prompt-card button[value='allow:never']")
    resp = await call
    assert resp.status == 200
    assert (served.decision().state, served.decision().source) == ("allow", "user")


@pytest.mark.parametrize("where", ["custom origin", "another port"])
async def test_pages_elsewhere_cannot_change_decisions(served, browser, other_port, where):
    page = await browser.new_page()
    await page.goto(served.dashboard)  # the attacker even knows the real token
    token = await page.locator("input[name=token]").first.get_attribute("value")
    assert token == panels.state(served.session).token
    base = served.url("web+evil://attack/") if where == "custom origin" else other_port
    query = f"?dash={served.dashboard}&token={token}&extension={EXT}&permission=storage"
    await page.goto(base + query)
    await page.wait_for_url(served.dashboard + "_protoreg/decide", timeout=10000)  # the form was submitted
    assert "Refused" in await page.inner_text("body")
    assert served.decision().state == "allow" and served.decision().source == "default"  # unchanged
    assert panels.state(served.session).rejected == 2  # both reached the dashboard and were refused
    assert panels.state(served.session).accepted == 0


async def test_screenshot_of_the_grants_panel(served, browser):
    """docs/dashboard-grants.png (written there with PROTOREG_DOCS_SCREENSHOTS=1, else to test-artifacts)."""
    g = Grantee.from_record(EXT, served.profile.grants(EXT))
    served.profile.decisions().decide(g, "https://api.example.org/*", "deny", expires="7d")
    served.profile.decisions().decide(g, "storage", "prompt")
    call = asyncio.ensure_future(served.session.fetch("web+notes://n/draft"))
    for _ in range(200):
        if served.session.permissions.pending():
            break
        await asyncio.sleep(0.02)
    page = await browser.new_page(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    await page.goto(served.dashboard)
    top = await page.locator("#prompts").bounding_box()
    bottom = await page.locator("table.grants").bounding_box()
    clip = {"x": 0, "y": top["y"] - 12, "width": 1100,
            "height": bottom["y"] + bottom["height"] - top["y"] + 24}
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-grants.png"
    await page.screenshot(path=str(shot), clip=clip)
    assert shot.stat().st_size > 5000
    if os.environ.get("PROTOREG_DOCS_SCREENSHOTS"):
        shutil.copy(shot, ROOT / "docs" / "dashboard-grants.png")
    served.session.permissions.answer(served.session.permissions.pending()[0].id, "deny")
    assert (await call).status == 403
