"""Helpers for the trust tests: real Ed25519 keys, real TUF stores, real bundles (no verification is mocked)."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

from protoreg import bundles, stores

HANDLER = """
from protoreg import Response, runtime

async def handleRequest(request):
    path = request.url.path
    if path == "/set":
        await runtime.storage.set("k", request.url.query.get("v", "").encode())
        return Response("stored")
    if path == "/get":
        value = await runtime.storage.get("k")
        return Response(value or b"none")
    return Response("{greeting} from " + request.url.host)
"""


def make_extension(root: Path, ext_id: str = "hello@example.org", version: str = "1.0.0", *,
                   scheme: str = "web+hello", permissions: list[str] | None = None,
                   host_permissions: list[str] | None = None, greeting: str = "hello") -> Path:
    """Write an extension directory under ``root`` and return it."""
    d = root / f"{ext_id}-{version}-{greeting}"
    d.mkdir(parents=True, exist_ok=True)
    manifest = {"manifest_version": 3, "name": ext_id.split("@")[0], "version": version,
                "browser_specific_settings": {"gecko": {"id": ext_id}},
                "protocol_handlers": [{"protocol": scheme, "name": scheme, "uriHandlerScript": "handler.py"}]}
    if permissions:
        manifest["permissions"] = permissions
    if host_permissions:
        manifest["host_permissions"] = host_permissions
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (d / "handler.py").write_text(textwrap.dedent(HANDLER).replace("{greeting}", greeting))
    return d


class Store:
    """A store in ``root/NAME`` with its top key, and helpers to publish, delegate and revoke."""

    def __init__(self, root: Path, name: str = "alpha") -> None:
        self.root = root
        self.name = name
        self.dir = root / name
        root.mkdir(parents=True, exist_ok=True)
        self.key_path, self.pub_path = stores.generate_key(root / f"{name}.key")
        self.key = stores.load_private_key(self.key_path)
        self.root_json = stores.init_store(self.dir, self.key)

    def publish(self, ext_dir: Path, *, role: str = "targets", key: stores.CryptoSigner | None = None,
                online_expiry: timedelta = stores.ONLINE_EXPIRY) -> str:
        return stores.publish(self.dir, bundles.pack(ext_dir), key or self.key, role=role,
                              online_expiry=online_expiry)

    def delegate(self, name: str, ceiling: list[str]) -> tuple[stores.CryptoSigner, list[stores.Clipped]]:
        priv, pub = stores.generate_key(self.root / f"{self.name}-{name}.key")
        clipped = stores.delegate(self.dir, name, stores.load_public_key(pub), ceiling, self.key)
        return stores.load_private_key(priv), clipped

    def revoke(self, ext_id: str) -> str:
        return stores.revoke(self.dir, ext_id, self.key)
