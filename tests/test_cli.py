"""The protoreg CLI: success and bad-input paths, exit codes, and never a traceback without --debug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protoreg.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELLO = str(ROOT / "examples" / "hello-scheme")


@pytest.fixture(autouse=True)
def _private_default_state(tmp_path, monkeypatch):
    """The default state directory (serve, fetch, ipfs import) lives under this test's tmp_path, not in $HOME."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def write_bad(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({
        "name": "x", "version": "1", "permissions": ["tabs"], "protocol_handlers": [
            {"protocol": "http", "name": "a", "uriHandlerScript": "missing.py"},
            {"protocol": "web+ok", "name": "b"}]}))
    return tmp_path


def test_check_reports_a_good_extension(capsys):
    assert main(["check", HELLO]) == 0
    captured = capsys.readouterr()
    assert "OK: Hello scheme 1.0.0 (id hello@example.org" in captured.out
    assert "web+hello: Hello, custom scheme (script handler.py, potentially trustworthy)" in captured.out
    assert "grants: none" in captured.out and captured.err == ""


def test_check_lists_every_problem_one_per_line_with_path_value_and_fix(tmp_path, capsys):
    assert main(["check", str(write_bad(tmp_path))]) == 1
    err = capsys.readouterr().err
    header, *lines = err.strip().splitlines()
    assert header.endswith("manifest.json: problems found: 4 problems")
    assert [line.split(":")[0].strip() for line in lines] == [  # in the order of the file's keys
        "permissions[0]", "protocol_handlers[0].protocol", "protocol_handlers[0].uriHandlerScript",
        "protocol_handlers[1]"]
    assert all("Fix: " in line for line in lines)
    assert "(got 'tabs')" in lines[0] and "(got 'http')" in lines[1] and "(got 'missing.py')" in lines[2]
    assert "Traceback" not in err


def test_check_reports_malformed_json_with_line_and_column(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{\n  "name": "x",,\n}')
    assert main(["check", str(tmp_path)]) == 1
    assert "malformed JSON at line 2, column 15" in capsys.readouterr().err


def test_check_notes_ignored_keys(tmp_path, capsys):
    data = json.loads((Path(HELLO) / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "description": "d"}))
    (tmp_path / "handler.py").write_text((Path(HELLO) / "handler.py").read_text())
    assert main(["check", str(tmp_path)]) == 0
    assert "ignored keys (not used by protoreg): description" in capsys.readouterr().out


def test_check_of_a_bundle_install_would_refuse_is_one_clear_error(tmp_path, capsys):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text((Path(HELLO) / "manifest.json").read_text())
    (bundle / "handler.py").write_text((Path(HELLO) / "handler.py").read_text())
    (tmp_path / "secret.py").write_text("X = 1\n")
    (bundle / "leak.py").symlink_to(tmp_path / "secret.py")
    assert main(["check", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("protoreg check: leak.py in ") and "symlink pointing outside" in err
    assert "Traceback" not in err


def test_check_of_a_missing_directory_and_usage_errors(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert "the following arguments are required: directory" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert main(["schema", "extra"]) == 2


def test_unexpected_errors_are_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    import protoreg.manifest

    def explode(directory):
        raise KeyError("surprise")

    monkeypatch.setattr(protoreg.manifest, "load_manifest", explode)
    assert main(["check", HELLO]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("protoreg check: internal error: KeyError: 'surprise'. Rerun with --debug for the "
                           "traceback, and please report it")
    assert main(["check", HELLO, "--debug"]) == 1  # --debug after the command, as the message suggests
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    assert main(["--debug", "check", HELLO]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_protoreg_errors_show_their_message_and_a_traceback_only_with_debug(capsys, monkeypatch):
    import protoreg.manifest
    from protoreg.errors import InstallError

    def refuse(directory):
        raise InstallError("nope. Do this instead")

    monkeypatch.setattr(protoreg.manifest, "load_manifest", refuse)
    assert main(["check", HELLO]) == 1
    assert capsys.readouterr().err == "protoreg check: nope. Do this instead\n"
    assert main(["check", "--debug", HELLO]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_schema_prints_valid_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "protocol_handlers" in schema["properties"]
    assert "uriHandlerScript" in schema["$defs"]["ProtocolHandler"]["properties"]


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
    for argv in (["check"], ["schema"], ["serve"], ["fetch"], ["doctor"], ["ipfs"], ["ipfs", "add"],
                 ["ipfs", "import"], []):
        assert main([*argv, "--help"]) == 0
        assert "example: protoreg" in capsys.readouterr().out, argv


def run_cli(*argv, console_script=False):
    exe = [str(Path(sys.executable).with_name("protoreg"))] if console_script else [sys.executable, "-m",
                                                                                       "protoreg.cli"]
    return subprocess.run([*exe, *argv], capture_output=True, text=True, timeout=60)


def test_the_cli_runs_in_a_real_process(tmp_path):
    good = run_cli("check", HELLO)
    assert good.returncode == 0 and "OK: Hello scheme" in good.stdout, good.stderr
    bad = run_cli("check", str(write_bad(tmp_path)))
    assert bad.returncode == 1 and "4 problems" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("check", str(tmp_path / "nonexistent-dir"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    usage = run_cli("check")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_the_console_script_prints_the_schema():
    script = Path(sys.executable).with_name("protoreg")
    if not script.exists():
        pytest.skip("the protoreg console script is not installed next to this Python")
    proc = run_cli("schema", console_script=True)
    assert proc.returncode == 0, proc.stderr
    assert "protocol_handlers" in json.loads(proc.stdout)["properties"]


def test_doctor_reports_layers_and_fails_on_a_missing_required_one(capsys):
    from protoreg.sandbox import probe

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sandbox layers:" in out and "landlock" in out and "aiohttp" in out
    assert "data dir: 4 GiB per extension" in out and "workers per origin-isolated extension: 16" in out
    offered = [layer.name for layer in probe().layers if layer.active]
    assert main(["doctor", *[arg for n in offered for arg in ("--require", n)]]) == 0
    capsys.readouterr()
    missing = [layer.name for layer in probe().layers if not layer.active]
    if missing:
        assert main(["doctor", "--require", missing[0]]) == 1
        assert f"required layer(s) unavailable: {missing[0]}" in capsys.readouterr().err


def test_doctor_require_of_an_unknown_layer_is_a_usage_error_listing_the_known_ones(capsys):
    from protoreg.sandbox import probe

    assert main(["doctor", "--require", "warp-drive"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer(s) 'warp-drive'" in err and "unavailable" not in err
    assert all(layer.name in err for layer in probe().layers)


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


def test_ipfs_add_runs_in_the_extensions_worker_and_gives_kubos_cid_without_hidden_entries(tmp_path, capsys):
    from tests.handlers.ipfs.helpers import ipfs_core

    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("<h1>hi</h1>")
    (site / "sub" / "big.bin").write_bytes(bytes(range(256)) * 3000)  # 768,000 bytes: three chunks and a node
    (site / "link").symlink_to("index.html")
    (site / ".env").write_text("SECRET=hunter2")
    (site / ".git").mkdir()
    (site / ".git" / "config").write_text("token")
    out = tmp_path / "site.car"
    assert main(["ipfs", "add", str(site), "-o", str(out), "--profile", str(tmp_path / "p")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    core = ipfs_core()
    expected = tmp_path / "expected.car"
    with expected.open("wb") as f:
        built = core.importer.add_to_car(site, f)  # the bundle's importer run in this process, from the disk
    assert line.startswith(f"{core.cids.v1_base32(built.cid)}  {site} ({built.size:,} bytes")
    assert out.read_bytes() == expected.read_bytes()  # the same CAR, block for block
    assert b"hunter2" not in out.read_bytes() and b"token" not in out.read_bytes()
    assert not list(tmp_path.glob(".*.partial"))
    spool = tmp_path / "p" / "data"  # the worker spooled in its data directory and left nothing behind
    assert [p.name for p in spool.rglob("*") if p.is_file()] == []
    # a single file: its CID is the file's, written to NAME.car by default
    assert main(["ipfs", "add", str(site / "index.html"), "-o", str(tmp_path / "i.car")]) == 0
    with (tmp_path / "x.car").open("wb") as f:
        single = core.importer.add_to_car(site / "index.html", f)
    assert capsys.readouterr().out.startswith(core.cids.v1_base32(single.cid))


def test_ext_run_streams_a_directory_in_and_the_output_to_a_file(tmp_path, capsys):
    from tests.handlers.ipfs.helpers import IPFS_BUNDLE

    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_text("a")
    out = tmp_path / "out.car"
    assert main(["ext", "run", "--profile", str(tmp_path / "p"), "-e", str(IPFS_BUNDLE), "-i", str(site),
                 "-o", str(out), "ipfs@protoreg", "ipfs", "add"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.stat().st_size > 0
    # a failing command leaves no output file, and its error reaches the terminal
    assert main(["ext", "run", "--profile", str(tmp_path / "p"), "-e", str(IPFS_BUNDLE), "-o",
                 str(tmp_path / "no.car"), "ipfs@protoreg", "ipfs", "add"]) == 1
    assert "usage: ipfs add" in capsys.readouterr().err and not (tmp_path / "no.car").exists()


def test_serve_imports_the_demo_site_through_the_ipfs_extensions_own_command(tmp_path):
    from protoreg.cli import _import_demo
    from protoreg.registry import Registry
    from tests.handlers.ipfs.helpers import DEMO_CAR, IPFS_BUNDLE, ipfs_core

    reg = Registry()
    reg.install(IPFS_BUNDLE)
    state = tmp_path / "p"
    with DEMO_CAR.open("rb") as f:
        root = ipfs_core().car.CarReader.open(f).roots[0]
    assert _import_demo(reg, state) == {"ipfs": f"ipfs://{ipfs_core().cids.v1_base32(root)}/"}
    url = f"ipfs://{ipfs_core().cids.v1_base32(root)}/"
    assert main(["fetch", "--profile", str(state), "-e", str(IPFS_BUNDLE), url]) == 0
    assert _import_demo(Registry(), state) == {}  # no ipfs extension: nothing to import


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


# -- newcomer path ----------------------------------------------------------------------------------------------------
def test_check_with_ungranted_capabilities_says_problems_found_and_never_ok(tmp_path, capsys):
    from protoreg.testing import write_extension

    bundle = write_extension(tmp_path / "greedy", scheme="web+greedy", ext_id="greedy@test", script=(
        "from protoreg import runtime\n"
        "async def handleRequest(request):\n"
        "    return await runtime.fetch('https://api.example.org/x')\n"))
    assert main(["check", str(bundle)]) == 1
    captured = capsys.readouterr()
    assert f"{bundle}: problems found: " in captured.out and "OK" not in captured.out
    assert "problems found: the code appears to use 1 capability" in captured.err


def test_fetch_reads_the_blocks_ipfs_import_stored_in_the_same_default_state_dir(tmp_path, capsys):
    from tests.handlers.ipfs.helpers import DEMO_CAR

    assert main(["ipfs", "import", str(DEMO_CAR)]) == 0  # the default state dir: $XDG_DATA_HOME/protoreg
    root = capsys.readouterr().out.split("open ipfs://")[1].split("/")[0]
    assert main(["fetch", "-i", f"ipfs://{root}/"]) == 0
    assert capsys.readouterr().out.startswith("200 ")
    state = tmp_path / "elsewhere"
    assert main(["ipfs", "import", str(DEMO_CAR), "--state-dir", str(state)]) == 0
    capsys.readouterr()
    assert main(["fetch", "-i", "--state-dir", str(state), f"ipfs://{root}/"]) == 0
    assert capsys.readouterr().out.startswith("200 ")
    assert main(["fetch", "--state-dir", str(tmp_path / "empty"), f"ipfs://{root}/"]) == 1  # nothing imported: 404


@pytest.mark.parametrize("url", ["https://example.org/", "HTTP://example.org/x"])
def test_fetch_of_an_http_url_says_it_is_not_a_custom_scheme(capsys, url):
    assert main(["fetch", url]) == 2
    err = capsys.readouterr().err
    assert "not a custom scheme" in err and "curl" in err and "protoreg fetch ipfs://" in err
    assert "claim" in err and "protocol_handlers" not in err


def test_serve_on_a_busy_port_says_so_before_any_banner(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "-e", HELLO, "--port", str(port), "--state-dir", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert f"port {port} on 127.0.0.1 is already in use" in captured.err and "--port" in captured.err
    assert "internal error" not in captured.err
    assert main(["serve", "-e", HELLO, "--port", "70000"]) == 1
    assert "not a TCP port" in capsys.readouterr().err


def _start(argv, **kw):
    import os

    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True, **kw)


def _wait_for(proc, text):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"{text!r} never printed: {''.join(lines)} {proc.stderr.read()}")


@pytest.mark.slow
def test_ctrl_c_stops_serve_quietly(tmp_path):
    import os
    import signal

    proc = _start([sys.executable, "-m", "protoreg.cli", "serve", "-e", HELLO, "--port", "0", "--state-dir",
                   str(tmp_path / "s")])
    try:
        banner = _wait_for(proc, "Press Ctrl+C to stop.")
        port = int(banner.split("dashboard at http://localhost:")[1].split("/")[0])
        import urllib.request

        for _ in range(100):  # a person presses Ctrl+C once the gateway answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_protoreg/status.json", timeout=5).close()
                break
            except OSError:
                import time

                time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group gets it
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "stopped" in out


@pytest.mark.slow
def test_ctrl_c_on_a_tasks_py_child_exits_without_a_traceback(tmp_path):
    import os
    import signal

    script = ("import sys; sys.path.insert(0, sys.argv[1]); import tasks; "
              "raise SystemExit(tasks._call_quietly([sys.executable, '-c', "
              "'import time, sys\\n"
              "try:\\n    print(\\'ready\\', flush=True)\\n    time.sleep(60)\\n"
              "except KeyboardInterrupt:\\n    sys.exit(130)']))")
    proc = _start([sys.executable, "-c", script, str(ROOT)])
    try:
        _wait_for(proc, "ready")
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_granted_fetch_example_works_as_shipped_with_allow_private_networks(capsys):
    import http.server
    import threading

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"granted upstream"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    example = str(ROOT / "examples" / "granted-fetch")
    url = f"web+proxy://x/?url=http://127.0.0.1:{server.server_address[1]}/"
    try:
        assert main(["fetch", "--allow-private-networks", "-e", example, url]) == 0
        assert capsys.readouterr().out == "granted upstream"
        assert main(["fetch", "-e", example, url]) == 1  # without the flag: refused, and the answer says why
        out = capsys.readouterr().out
        assert "a loopback address: refused" in out and "--allow-private-networks" in out
    finally:
        server.shutdown()
        server.server_close()
    assert "--allow-private-networks" in (ROOT / "examples" / "granted-fetch" / "handler.py").read_text()


def test_tasks_py_runs_the_cli_from_the_venv_and_fuzz_with_10000_examples(monkeypatch):
    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    calls = []
    monkeypatch.setattr(tasks, "ensure_venv", lambda: calls.append("venv"))
    monkeypatch.setattr(tasks, "_call_quietly", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    monkeypatch.delenv("PROTOREG_FUZZ_EXAMPLES", raising=False)
    assert tasks.main(["protoreg", "check", "examples/hello-scheme"]) == 0
    assert calls[0] == "venv" and calls[1][0] == [str(tasks.BIN / "protoreg"), "check", "examples/hello-scheme"]
    assert tasks.main(["fuzz", "-x"]) == 0
    cmd, kw = calls[3]
    assert cmd[1:] == ["-m", "pytest", "tests/fuzz", "--timeout=0", "-x"]
    assert kw["env"]["PROTOREG_FUZZ_EXAMPLES"] == "10000"
    assert "python3 tasks.py protoreg" in tasks.__doc__ and "python3 tasks.py fuzz" in tasks.__doc__
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 tasks.py protoreg ARGS..." in readme and "python3 tasks.py fuzz" in readme
