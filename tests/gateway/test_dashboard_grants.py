"""The dashboard's grant controls over HTTP: forms with a per-session token, refused without the dashboard's own
Origin, with a cross-site Sec-Fetch-Site or a wrong token; decisions checked from outside (the profile)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from protoreg import Profile
from protoreg.gateway import create_app
from protoreg.gateway import grants as panels
from protoreg.permissions import Grantee, wait_for_dashboard
from protoreg.session import Session
from protoreg.testing import write_extension

EXT = "perm@test"
HANDLER = """
from protoreg import Response, runtime
from protoreg.errors import PermissionDenied

async def handleRequest(request):
    try:
        await runtime.storage.set("k", "v")
    except PermissionDenied as e:
        return Response(str(e), status=403)
    return Response("stored")
"""
HOST = {"Host": "localhost:8080"}
OWN = "http://localhost:8080"


@pytest.fixture
async def setup(tmp_path, aiohttp_client):
    profile = Profile(tmp_path / "profile")
    profile.install_unsigned(write_extension(tmp_path / "e", scheme="web+perm", script=HANDLER, ext_id=EXT,
                                             permissions=["storage"]), accept_risk=True)
    reg = profile.registry()
    session = Session(reg, profile=profile, on_prompt=wait_for_dashboard)
    client = await aiohttp_client(create_app(reg, session=session))
    yield profile, session, client
    await session.close()


def decision(profile):
    return Profile(profile.path).decisions().decision(Grantee.from_record(EXT, profile.grants(EXT)), "storage")


async def token_of(client) -> str:
    resp = await client.get("/", headers=HOST)
    assert resp.status == 200
    assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none': no script at all
    return re.search(r'name=token value="([^"]+)"', await resp.text()).group(1)


async def test_a_same_origin_form_post_with_the_token_changes_the_decision(setup):
    profile, _session, client = setup
    token = await token_of(client)
    resp = await client.post("/_protoreg/decide", headers={**HOST, "Origin": OWN, "Sec-Fetch-Site": "same-origin"},
                             data={"token": token, "extension": EXT, "permission": "storage", "action": "deny",
                                   "expires": "1h"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/#grants"
    assert decision(profile).state == "deny" and decision(profile).source == "user"
    resp = await client.post("/_protoreg/decide", headers={**HOST, "Origin": OWN},
                             data={"token": token, "extension": EXT, "permission": "storage", "action": "revoke"},
                             allow_redirects=False)
    assert resp.status == 303 and decision(profile).expires is None
    page = await (await client.get("/", headers=HOST)).text()
    assert "denied</span>" in page and "by the user, never expires" in page
    assert '"how": "dashboard revoke"' in (profile.path / "audit.log").read_text()
    data = await (await client.get("/_protoreg/status.json", headers=HOST)).json()
    assert data["decisions"][EXT]["storage"]["state"] == "deny" and data["prompts"] == []
    assert token not in json.dumps(data)


@pytest.mark.parametrize("headers, why", [
    ({}, "no Origin header"),
    ({"Origin": "http://a.web-perm.s0000000000.localhost:8080"}, "not from the dashboard"),
    ({"Origin": "http://localhost:9999"}, "not from the dashboard"),
    ({"Origin": "null"}, "not from the dashboard"),
    ({"Origin": OWN, "Sec-Fetch-Site": "same-site"}, "not same-origin"),
    ({"Origin": OWN, "Sec-Fetch-Site": "cross-site"}, "not same-origin"),
])
async def test_changes_from_elsewhere_are_refused(setup, headers, why):
    profile, session, client = setup
    token = await token_of(client)
    resp = await client.post("/_protoreg/decide", headers={**HOST, **headers},
                             data={"token": token, "extension": EXT, "permission": "storage", "action": "deny"})
    assert resp.status == 403 and why in await resp.text()
    assert decision(profile).state == "allow"
    assert panels.state(session).rejected == 1


async def test_a_wrong_or_missing_token_is_refused(setup):
    profile, _session, client = setup
    await token_of(client)
    for data in ({"token": "x" * 43}, {}):
        resp = await client.post("/_protoreg/decide", headers={**HOST, "Origin": OWN},
                                 data={**data, "extension": EXT, "permission": "storage", "action": "deny"})
        assert resp.status == 403 and "token" in await resp.text()
    assert decision(profile).state == "allow"
    assert (await client.get("/_protoreg/decide", headers=HOST)).status == 405


async def test_a_pending_prompt_is_answered_from_the_dashboard(setup):
    profile, session, client = setup
    session.permissions.decide(Grantee.from_record(EXT, profile.grants(EXT)), "storage", "prompt")
    call = asyncio.ensure_future(session.fetch("web+perm://site/"))
    for _ in range(200):
        if session.permissions.pending():
            break
        await asyncio.sleep(0.02)
    page = await (await client.get("/", headers=HOST)).text()
    assert "asks to use <code>storage</code>" in page
    token = re.search(r'name=token value="([^"]+)"', page).group(1)
    prompt_id = session.permissions.pending()[0].id
    resp = await client.post("/_protoreg/prompt", headers={**HOST, "Origin": OWN},
                             data={"token": token, "id": prompt_id, "answer": "allow:session"}, allow_redirects=False)
    assert resp.status == 303
    resp = await call
    assert resp.status == 200 and await resp.text() == "stored"
    assert decision(profile).expires == "session"
    resp = await client.post("/_protoreg/prompt", headers={**HOST, "Origin": OWN},
                             data={"token": token, "id": prompt_id, "answer": "allow:once"})
    assert resp.status == 409


async def test_the_audit_panel_shows_readable_times_and_reasons(setup):
    profile, session, client = setup
    Profile(profile.path).decisions().revoke(Grantee.from_record(EXT, profile.grants(EXT)), "storage")
    assert (await session.fetch("web+perm://site/")).status == 403
    page = await (await client.get("/?denied=1&extension=perm%40test", headers=HOST)).text()
    audit = page.split("id=audit", 1)[1]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", audit) and "s ago" in audit
    assert "storage is denied (deny by the user, never expires)" in audit
