"""The ipfs bundle's own modules (as the CLI loads them) and a Session whose ipfs store holds given CARs."""

from __future__ import annotations

from pathlib import Path

import pytest

import protoreg
from tests.conftest import conformance_path
from tests.handlers.ipfs.helpers import IPFS_BUNDLE, ipfs_core, store_for

core = ipfs_core()


def car(name: str) -> Path:
    return conformance_path("ipfs", name)


def import_record(extension, state: Path, raw: bytes, name_text: str):
    """Verify a record and put it where the ipns:// handler reads it (tests only; users go through the
    extension's own command: protoreg ipns import)."""
    from tests.handlers.ipfs.helpers import data_dir_for

    name, _ = core.ipns.parse_name(name_text)
    record = core.ipns.verify_record(name, raw)
    path = data_dir_for(extension, state) / "ipns" / f"{name.text}.ipns-record"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return record


@pytest.fixture
def store(tmp_path):
    return core.blocks.BlockStore(tmp_path / "blocks")


@pytest.fixture
def ipfs(tmp_path):
    """(registry, state_dir, import_car(path) -> roots) for fetching through real sandboxed workers."""
    reg = protoreg.Registry()
    ext = reg.install(IPFS_BUNDLE)
    state = tmp_path / "state"

    def import_car(path: Path) -> list[str]:
        with path.open("rb") as f:
            report = core.car.import_car(f, store_for(ext, state))
        return [core.cids.v1_base32(r) for r in report.roots]

    return reg, state, import_car


@pytest.fixture
async def session(ipfs):
    reg, state, _ = ipfs
    async with protoreg.Session(reg, state_dir=str(state)) as s:
        yield s
