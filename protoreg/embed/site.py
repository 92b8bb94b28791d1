"""Site identity: what a browser shows about the page it displays (scheme, origin, trust, who serves it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protoreg.errors import InvalidURL, UnknownScheme

if TYPE_CHECKING:
    from protoreg.registry import Registry

__all__ = ["SiteInfo", "site_info"]

_STORE_PREFIX = "store "


@dataclass(frozen=True)
class SiteInfo:
    """The identity of a page's site, for an address bar or a site-information popup."""

    #: The URL's scheme ("ipfs").
    scheme: str
    #: The serialized origin ("ipfs://bafy…"), or "null" for an opaque one.
    origin: str
    #: Whether the origin is potentially trustworthy (Secure Contexts; the handler's ``uriIsTrustworthy``).
    trustworthy: bool
    #: The extension serving the scheme (its id and name), or None for a scheme protoreg doesn't serve.
    extension_id: str | None = None
    extension_name: str | None = None
    #: The store that signed the installed extension, or None (unsigned, development install).
    store: str | None = None

    def summary(self) -> str:
        """One line for a status bar: ``ipfs://bafy… · secure · served by ipfs@… (store alpha)``."""
        parts = [self.origin, "secure" if self.trustworthy else "not secure"]
        if self.extension_id is not None:
            signed = f"signed by store {self.store}" if self.store else "unsigned"
            parts.append(f"served by {self.extension_name} ({self.extension_id}, {signed})")
        return " · ".join(parts)


def site_info(registry: Registry, url: str) -> SiteInfo:
    """The site identity of ``url``; any URL works (an unregistered scheme has no extension)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    try:
        origin = registry.origin(url)
        trustworthy = registry.is_potentially_trustworthy(origin)
    except (InvalidURL, ValueError):
        return SiteInfo(scheme=scheme, origin="null", trustworthy=False)
    try:
        entry = registry.lookup(scheme)
    except UnknownScheme:
        return SiteInfo(scheme=scheme, origin=origin.serialize(), trustworthy=trustworthy)
    ext = entry.extension
    provenance = getattr(ext, "provenance", "")
    store = provenance[len(_STORE_PREFIX):] if provenance.startswith(_STORE_PREFIX) else None
    return SiteInfo(scheme=scheme, origin=origin.serialize(), trustworthy=trustworthy, extension_id=ext.id,
                    extension_name=ext.manifest.name, store=store)
