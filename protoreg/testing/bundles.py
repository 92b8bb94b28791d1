"""Write an extension bundle from strings (for tests and examples)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_extension(directory: str | Path, *, scheme: str, script: str, ext_id: str | None = None,
                    name: str | None = None, trustworthy: bool = False, permissions: list[str] | None = None,
                    host_permissions: list[str] | None = None, csp: str | None = None,
                    files: Mapping[str, str] | None = None, manifest_extra: Mapping[str, Any] | None = None,
                    ) -> Path:
    """Create ``directory`` with a manifest.json for ``scheme`` and ``handler.py`` holding ``script``."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    (root / "handler.py").write_text(textwrap.dedent(script))
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    ext_id = ext_id or f"{scheme.replace('+', '-')}@test"
    manifest: dict[str, Any] = {
        "manifest_version": 3, "name": name or ext_id, "version": "1.0.0",
        "browser_specific_settings": {"gecko": {"id": ext_id}},
        "protocol_handlers": [{"protocol": scheme, "name": name or scheme, "uriHandlerScript": "handler.py",
                               "uriIsTrustworthy": trustworthy}],
        "permissions": permissions or [], "host_permissions": host_permissions or [],
    }
    if csp:
        manifest["content_security_policy"] = {"protocol_pages": csp}
    manifest.update(manifest_extra or {})
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
