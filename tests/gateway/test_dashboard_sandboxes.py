"""Named sandboxes on the dashboard (issue 14): grants, decisions and audit per sandbox (``ext@x#store``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from protoreg import Profile
from protoreg.gateway import create_app
from protoreg.session import Session

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "split-privileges"
EXT = "split-privileges@example.org"
HOST = {"Host": "localhost:8080"}
OWN = "http://localhost:8080"


async def test_dashboard_shows_and_decides_per_sandbox(tmp_path, aiohttp_client):
    root = tmp_path / "ext"
    shutil.copytree(EXAMPLE, root)
    profile = Profile(tmp_path / "profile")
    profile.install_unsigned(root, accept_risk=True)
    reg = profile.registry()
    session = Session(reg, profile=profile)
    try:
        client = await aiohttp_client(create_app(reg, session=session))
        page = await (await client.get("/", headers=HOST)).text()
        assert f"<code>{EXT}#net</code>" in page and f"<code>{EXT}#store</code>" in page
        assert f'data-extension="{EXT}#store" data-permission="storage"' in page
        assert f'data-extension="{EXT}" data-permission' not in page  # the handler holds nothing to decide
        data = await (await client.get("/_protoreg/status.json", headers=HOST)).json()
        ext = next(e for e in data["extensions"] if e["id"] == EXT)
        assert ext["permissions"] == [] and ext["host_permissions"] == []
        assert {s["id"]: s["permissions"] + s["host_permissions"] for s in ext["sandboxes"]} == {
            f"{EXT}#net": ["https://trustless-gateway.link/*"], f"{EXT}#store": ["storage"]}
        assert data["decisions"][f"{EXT}#store"]["storage"]["state"] == "allow"
        token = re.search(r'name=token value="([^"]+)"', page).group(1)
        resp = await client.post("/_protoreg/decide", headers={**HOST, "Origin": OWN},
                                 data={"token": token, "extension": f"{EXT}#store", "permission": "storage",
                                       "action": "deny", "expires": "never"}, allow_redirects=False)
        assert resp.status == 303
        data = await (await client.get("/_protoreg/status.json", headers=HOST)).json()
        assert data["decisions"][f"{EXT}#store"]["storage"]["state"] == "deny"
        resp = await client.get(f"/?extension={EXT}%23store", headers=HOST)
        assert f'<option value="{EXT}#store" selected>' in await resp.text()
    finally:
        await session.close()
