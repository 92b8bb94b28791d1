"""Capability inference: what the code appears to use that the manifest does not grant."""

from __future__ import annotations

from protoreg.cli import main
from protoreg.inference import infer
from protoreg.manifest import load_manifest
from protoreg.testing import write_extension

SCRIPT = """
import socket
import subprocess
from protoreg import Response, runtime

async def handleRequest(request):
    await runtime.fetch("https://api.example.org/v1")
    await runtime.fetch("https://granted.example/x")
    await runtime.storage.set("k", "v")
    return Response("x")
"""


def test_ungranted_fetch_targets_storage_and_blocked_modules_are_found(tmp_path):
    root = write_extension(tmp_path / "e", scheme="web+e", script=SCRIPT, host_permissions=["https://granted.example/*"])
    findings = infer({"handler.py": (root / "handler.py").read_bytes()}, load_manifest(root))
    text = "\n".join(str(f) for f in findings)
    assert "handler.py:2: imports socket: handlers have no network" in text
    assert "imports subprocess: handlers can't start processes" in text
    assert 'fetches https://api.example.org/v1, which host_permissions does not grant: add ' \
           '"https://api.example.org/*"' in text
    assert "granted.example" not in text
    assert 'calls runtime.storage.set but the manifest lacks the "storage" permission' in text


def test_a_granted_extension_has_no_findings(tmp_path):
    root = write_extension(tmp_path / "ok", scheme="web+ok", permissions=["storage"],
                           host_permissions=["https://api.example.org/*"], script="""
        from protoreg import Response, runtime
        async def handleRequest(request):
            await runtime.fetch("https://api.example.org/v1")
            await runtime.storage.get("k")
            return Response("x")
    """)
    assert infer({"handler.py": (root / "handler.py").read_bytes()}, load_manifest(root)) == []


def test_protoreg_check_reports_inferred_capabilities_and_fails(tmp_path, capsys):
    root = write_extension(tmp_path / "e", scheme="web+e", script=SCRIPT)
    assert main(["check", str(root)]) == 1
    err = capsys.readouterr().err
    assert "appears to use" in err and "runtime.storage.set" in err and "Traceback" not in err
