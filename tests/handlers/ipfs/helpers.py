"""The ipfs bundle's internals for tests (and the benchmarks and screenshots): tests may import the bundle's own
modules (ipfs_core) to build fixtures and check results; the library never does (tests/test_layering.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from protoreg.broker import Broker
from protoreg.bundled import builtin_extension

__all__ = ["DEMO_CAR", "IPFS_BUNDLE", "data_dir_for", "ipfs_core", "store_for"]

IPFS_BUNDLE = builtin_extension("ipfs")
DEMO_CAR = IPFS_BUNDLE / "demo-site.car"


def ipfs_core() -> Any:
    """The bundle's ``ipfs_core`` package, imported in this process (the bundle directory put on sys.path)."""
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


def data_dir_for(extension: Any, state_dir: Path) -> Path:
    """The extension's data directory under the Session's state directory (where its worker reads and writes)."""
    data = Broker(data_root=state_dir / "data").data_dir(extension)
    if data is None:
        raise PermissionError(f"{extension.id} has no data directory: its manifest lacks the 'storage' permission")
    return data


def store_for(extension: Any, state_dir: Path) -> Any:
    """The block store the extension's worker uses, under the Session's state directory."""
    return ipfs_core().blocks.BlockStore(data_dir_for(extension, state_dir) / "blocks")
