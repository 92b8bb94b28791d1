"""The audit log (protoreg/audit.py): queries, and bounds on what a worker can make it keep."""

from __future__ import annotations

import os

import protoreg
from protoreg.audit import MAX_FIELD, AuditLog
from protoreg.testing import write_extension


def test_records_are_kept_and_filtered(tmp_path):
    log = AuditLog(path=tmp_path / "audit.sqlite3")
    log.record("a@x", "web+a://h", "fetch", "https://e.org/", True, "allowed by the user",
               permission="https://e.org/*")
    log.record("b@x", "web+b://h", "storage.get", "k", False, "not granted", permission="storage")
    assert [r.extension for r in log.records(decision="denied")] == ["b@x"]
    assert [r.target for r in log.records(capability="fetch")] == ["https://e.org/"]
    log.close()
    assert AuditLog(path=tmp_path / "audit.sqlite3").records(extension="a@x")[0].permission == "https://e.org/*"


def test_a_long_field_is_clipped_saying_how_much(tmp_path):
    log = AuditLog(path=tmp_path / "audit.sqlite3")
    rec = log.record("a@x", "web+a://h", "fetch", "https://e.org/" + "a" * 300_000, False, "denied " * 100_000)
    assert rec.target.startswith("https://e.org/aaa") and rec.target.endswith("more characters not kept)")
    assert len(rec.target) < MAX_FIELD + 60 and len(rec.reason) < MAX_FIELD + 60
    assert log.records()[0].target == rec.target


def test_the_file_stops_growing_at_max_bytes(tmp_path):
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path=path, max_bytes=2 * 1024 * 1024)
    for i in range(12_000):  # ~2 KiB each: 24 MiB without the bound
        log.record("a@x", "web+a://h", "fetch", f"https://e.org/{i}/" + "b" * 2000, False, "r" * 100)
    size = os.path.getsize(path) + (os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)
    assert size < 8 * 1024 * 1024, size
    newest = log.records(newest_first=True, limit=1)[0]
    assert newest.target.startswith("https://e.org/11999/")  # the oldest went first
    assert len(log.records()) < 12_000


async def test_a_worker_cannot_grow_the_hosts_audit_log_with_huge_denied_urls(tmp_path):
    """Checked on the host: the audit database's size after 200 denied fetches of 200 KB URLs each."""
    handler = """
import asyncio
from protoreg import Response, runtime
async def handleRequest(request):
    url = "https://not-granted.example/" + "x" * 200_000
    denied = 0
    for _ in range(200):
        try:
            await runtime.fetch(url)
        except PermissionError:
            denied += 1
    return Response(str(denied))
"""
    reg = protoreg.Registry()
    reg.install(write_extension(tmp_path / "big", scheme="web+big", script=handler, ext_id="big@test",
                                host_permissions=["https://granted.example/*"]))
    state = tmp_path / "state"
    async with protoreg.Session(reg, state_dir=str(state)) as session:
        resp = await session.fetch("web+big://x/")
        assert (resp.status, await resp.text()) == (200, "200")
        assert len(session.audit.records(decision="denied")) == 200
    total = sum(f.stat().st_size for f in state.rglob("audit.sqlite3*"))
    assert total < 4 * 1024 * 1024, f"the audit log holds {total} bytes after 200 denials"  # unclipped: ~120 MB
