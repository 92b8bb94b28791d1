"""The protoreg CLI: success and bad-input paths, exit codes, and never a traceback without --debug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protoreg.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELLO = str(ROOT / "examples" / "hello-scheme")


def test_check_reports_a_good_extension(capsys):
    assert main(["check", HELLO]) == 0
    out = capsys.readouterr().out
    assert "OK: Hello scheme 1.0.0" in out and "web+hello" in out


def test_check_lists_every_problem_and_exits_1(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({
        "name": "x", "version": "1", "protocol_handlers": [
            {"protocol": "http", "name": "a", "uriHandlerScript": "missing.py"},
            {"protocol": "web+ok", "name": "b"}]}))
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err
    assert "protocol_handlers[0].protocol" in err and "protocol_handlers[0].uriHandlerScript" in err
    assert "protocol_handlers[1]" in err and "Traceback" not in err


def test_check_of_a_missing_directory_and_usage_errors(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert main([]) == 2
    assert main(["bogus"]) == 2


def test_schema_prints_valid_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "protocol_handlers" in schema["properties"]


def test_fetch_prints_status_headers_and_body(capsys):
    assert main(["fetch", "-i", "-e", HELLO, "web+hello://world/"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("200 (basic)") and "Hello from web+hello://world/" in out
    assert "Content-Security-Policy: object-src 'none'" in out


def test_fetch_bad_input_is_one_line_without_traceback(capsys):
    assert main(["fetch", "-e", HELLO, "web+nope://x/"]) == 1
    err = capsys.readouterr().err
    assert "no installed extension handles the scheme 'web+nope'" in err and "Traceback" not in err
    assert main(["fetch", "-e", HELLO, "-H", "no-colon", "web+hello://x/"]) == 2


def test_help_of_every_command_shows_an_example(capsys):
    for cmd in ("check", "schema", "serve", "fetch", "doctor"):
        assert main([cmd, "--help"]) == 0
        assert "example: protoreg" in capsys.readouterr().out


def test_console_script_runs_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "protoreg.cli", "check", HELLO], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run([sys.executable, "-m", "protoreg.cli", "check", "/nonexistent-dir"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_doctor_reports_layers_and_fails_on_a_missing_required_one(capsys):
    from protoreg.sandbox import probe

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sandbox layers:" in out and "landlock" in out and "aiohttp" in out
    offered = [layer.name for layer in probe().layers if layer.active]
    assert main(["doctor", *sum((["--require", n] for n in offered), [])]) == 0
    capsys.readouterr()
    assert main(["doctor", "--require", "warp-drive"]) == 1
    assert "required layer(s) unavailable: warp-drive" in capsys.readouterr().err


def test_ipfs_add_then_import_then_fetch(tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>hi</h1>")
    out_car = tmp_path / "site.car"
    assert main(["ipfs", "add", str(site), "-o", str(out_car)]) == 0
    root = capsys.readouterr().out.split()[0]
    assert root.startswith("bafy") and out_car.stat().st_size > 0
    state = tmp_path / "state"
    assert main(["ipfs", "import", str(out_car), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "every one verified" in out and f"ipfs://{root}/" in out


def test_ipfs_import_refuses_a_corrupt_car_naming_the_block(tmp_path, capsys):
    site = tmp_path / "f.txt"
    site.write_text("hello world\n")
    car = tmp_path / "f.car"
    assert main(["ipfs", "add", str(site), "-o", str(car)]) == 0
    data = bytearray(car.read_bytes())
    data[-2] ^= 0xFF
    car.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["ipfs", "import", str(car), "--state-dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "failed verification" in err and "bafkrei" in err and "Traceback" not in err
    assert main(["ipfs", "import", str(tmp_path / "missing.car")]) == 1
    assert main(["ipfs", "add", str(tmp_path / "missing")]) == 1
    assert main(["ipfs"]) == 2


def test_serve_with_a_bad_extension_is_one_clear_error(tmp_path, capsys):
    assert main(["serve", "-e", str(tmp_path / "nope"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "protoreg serve:" in err and "does not exist" in err and "Traceback" not in err


def test_fetch_to_a_file_writes_the_body(tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["fetch", "-e", HELLO, "-o", str(out), "web+hello://world/"]) == 0
    assert "Hello from web+hello://world/" in out.read_text()
