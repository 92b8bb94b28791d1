"""Host-side access to the built-in ipfs bundle's store: ``protoreg ipfs import/add`` and ``protoreg serve``.

The handler's helper modules live in its bundle (handlers/ipfs/ipfs_core); the parent imports the same code to
fill the block store that the sandboxed worker reads through its data directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["IPFS_BUNDLE", "data_dir_for", "default_state_dir", "ipfs_core", "store_for"]

IPFS_BUNDLE = Path(__file__).resolve().parents[1] / "handlers" / "ipfs"
DEMO_CAR = IPFS_BUNDLE / "demo-site.car"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "protoreg"


def ipfs_core() -> Any:
    if str(IPFS_BUNDLE) not in sys.path:
        sys.path.insert(0, str(IPFS_BUNDLE))
    import ipfs_core.blocks
    import ipfs_core.car
    import ipfs_core.cids
    import ipfs_core.dagpb
    import ipfs_core.gateway
    import ipfs_core.importer
    import ipfs_core.ipns
    import ipfs_core.network
    import ipfs_core.redirects
    import ipfs_core.unixfs

    return ipfs_core


def store_for(extension: Any, state_dir: Path) -> Any:
    """The block store the extension's worker uses, under the Session's state directory."""
    from protoreg.broker import Broker

    data = Broker(data_root=state_dir / "data").data_dir(extension)
    if data is None:
        raise PermissionError(f"{extension.id} has no data directory: its manifest lacks the 'storage' permission")
    return ipfs_core().blocks.BlockStore(data / "blocks")


def data_dir_for(extension: Any, state_dir: Path) -> Path:
    from protoreg.broker import Broker

    data = Broker(data_root=state_dir / "data").data_dir(extension)
    if data is None:
        raise PermissionError(f"{extension.id} has no data directory: its manifest lacks the 'storage' permission")
    return data
