"""The HTTP gateway that gives every (scheme, host) its own browser origin (see ``app.create_app``)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from protoreg.gateway.app import create_app

        return create_app
    raise AttributeError(name)
