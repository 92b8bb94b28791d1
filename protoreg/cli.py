"""The ``protoreg`` command line. Exit codes: 0 success, 1 a problem was found or an operation failed, 2 usage.

Errors are one readable message; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from protoreg.bundled import default_bundles
from protoreg.errors import ManifestError, ProtoregError

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PRIVATE_HELP = ("let handlers fetch loopback, private and link-local addresses that their host_permissions grant "
                "(refused by default against server-side request forgery); e.g. examples/granted-fetch and a "
                "server on 127.0.0.1")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


# -- check ------------------------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from protoreg.inference import infer
    from protoreg.manifest import load_manifest
    from protoreg.registry import read_bundle

    try:
        manifest = load_manifest(args.directory)
        files, digest = read_bundle(Path(args.directory))
    except ManifestError as exc:
        n = len(exc.problems)
        _err(f"{exc.source}: problems found: {n} problem{'s' if n != 1 else ''}")
        for p in exc.problems:
            _err(f"  {p}")
        return EXIT_FAIL
    from protoreg.lint import lint

    findings = infer(files, manifest)
    lints = lint(args.directory, manifest, files)
    errors = [x for x in lints if x.severity == "error"]
    warnings = [x for x in lints if x.severity == "warning"]
    failed = bool(findings or errors or (args.strict and warnings))
    result = "problems found" if failed else "OK"
    if warnings and not failed:
        result += f" with {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    _out(f"{args.directory}: {result}: {manifest.name} {manifest.version} (id {manifest.id}, code {digest[:12]})")
    for h in manifest.protocol_handlers:
        how = f"script {h.uriHandlerScript}" if h.uriHandlerScript else f"redirects to {h.uriTemplate}"
        trust = ", potentially trustworthy" if h.uriIsTrustworthy else ""
        _out(f"  {h.protocol}: {h.name} ({how}{trust})")
    grants = [*manifest.permissions, *manifest.host_permissions]
    _out(f"  grants: {', '.join(grants) if grants else 'none'}")
    for name, sb in (getattr(manifest, "sandboxes", None) or {}).items():  # protoreg/sandboxes.py
        _out(f"  sandbox {name} ({sb.script}, id {manifest.id}#{name}): grants: "
             f"{', '.join(sb.requested) if sb.requested else 'none'}")
    for i, cs in enumerate(getattr(manifest, "content_scripts", None) or ()):
        _out(f"  content script {i}: {', '.join(cs.matches)} -> {', '.join([*cs.js, *cs.css])} ({cs.run_at})")
    for i, rf in enumerate(getattr(manifest, "response_filters", None) or ()):
        _out(f"  response filter {i}: {', '.join(rf.matches)} -> {rf.script}")
    _out(f"  python files: {len(files)}")
    if manifest.ignored_keys:
        _out(f"  ignored keys (not used by protoreg): {', '.join(manifest.ignored_keys)}")
    if findings:
        _err(f"{args.directory}: problems found: the code appears to use {len(findings)} capabilit"
             f"{'y' if len(findings) == 1 else 'ies'} the manifest does not grant:")
        for finding in findings:
            _err(f"  error [ungranted-capability] {finding}")
    for title, group in (("errors", errors), ("warnings", warnings)):
        if group:
            _err(f"{args.directory}: {len(group)} {title[:-1] if len(group) == 1 else title}:")
            for x in group:
                _err(f"  {x}")
    return EXIT_FAIL if failed else EXIT_OK


# -- new, pack ---------------------------------------------------------------------------------------------------
def cmd_new(args: argparse.Namespace) -> int:
    from protoreg.scaffold import scaffold

    written = scaffold(args.directory, args.scheme, args.template, ext_id=args.id, name=args.name)
    _out(f"created {args.directory} ({args.template} template for {args.scheme}://):")
    for path in written:
        _out(f"  {path.relative_to(args.directory).as_posix()}")
    _out(f"next: protoreg check {args.directory} && protoreg serve -e {args.directory} --reload")
    return EXIT_OK


def cmd_pack(args: argparse.Namespace) -> int:
    import hashlib

    from protoreg import bundles

    try:
        data = bundles.pack(args.directory)
    except ManifestError as exc:
        _err(f"{exc.source}: problems found: {len(exc.problems)}")
        for p in exc.problems:
            _err(f"  {p}")
        return EXIT_FAIL
    b = bundles.parse(data)
    out = Path(args.output or f"{b.id.split('@')[0]}-{b.version}.protoreg")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    _out(f"packed {b.id} {b.version} into {out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    for path, content in sorted(b.files.items()):
        _out(f"  {hashlib.sha256(content).hexdigest()}  {len(content):>9}  {path}")
    return EXIT_OK


# -- schema -----------------------------------------------------------------------------------------------------
def cmd_schema(args: argparse.Namespace) -> int:
    from protoreg.manifest import manifest_json_schema

    _out(json.dumps(manifest_json_schema(), indent=2))
    return EXIT_OK


# -- serve ------------------------------------------------------------------------------------------------------
def _listen(host: str, port: int) -> socket.socket | str:
    """A listening socket for the gateway, or why there can't be one (said before any banner is printed)."""
    if not 0 <= port <= 65535:
        return f"--port {port} is not a TCP port (0-65535). Choose one such as --port 8081"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"can't listen on {host!r}: {exc.strerror or exc}. Use --host 127.0.0.1 or another local address"
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: restart without waiting
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use (another protoreg serve, or another program, is "
                    f"listening there). Stop it, or choose another port: --port {port + 1 if port < 65535 else 8081}")
        if exc.errno == errno.EACCES:
            return f"not allowed to listen on port {port} (ports below 1024 need privileges). Use --port 8080"
        return f"can't listen on {host}:{port}: {exc.strerror or exc}. Choose another --host or --port"
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from protoreg.gateway import create_app
    from protoreg.gateway.hosts import to_gateway_url

    profile = _profile(args)
    reg = _profile_registry(profile, args.extension)
    state = profile.path
    examples = _import_demo(reg, state)
    allow: tuple[str, ...] = ()
    if args.upstream:  # the ipfs extension's settings file (see handlers/ipfs/README.md)
        allow = _set_upstreams(reg, state, args.upstream)
    if args.reload and not args.extension:
        _err("protoreg serve: --reload watches the extension directories given with -e DIR; add -e DIR")
        return EXIT_USAGE
    sock = _listen(args.host, args.port)
    if isinstance(sock, str):
        _err(f"protoreg serve: {sock}")
        return EXIT_FAIL
    port = sock.getsockname()[1]
    session = _dashboard_session(reg, state, port, args.allow_private_networks, allow)
    app = create_app(reg, session=session)

    async def close_session(app: Any) -> None:  # a given session is the caller's to close
        await session.close()

    app.on_cleanup.append(close_session)
    _refresh_in_background(app, profile, reg)
    if args.reload:
        from protoreg.reload import Reloader

        reloader = Reloader(reg, args.extension, report=lambda text: _err(f"protoreg serve: {text}"))
        reloader.install(app)
    app["protoreg_examples"] = examples
    authority = f"localhost:{port}"
    _out(f"protoreg gateway: dashboard at http://{authority}/ (profile {state})")
    for ext in reg.extensions.values():
        note = f" (DISABLED: {reg.disabled[ext.id]})" if ext.id in reg.disabled else ""
        _out(f"  {ext.id} {ext.version}: {ext.provenance}{note}")
    for ext_id, problem in profile.problems.items():
        _err(f"  REFUSED {ext_id}: {problem}")
    for scheme in sorted(reg.schemes):
        example = examples.get(scheme, f"{scheme}://example/")
        try:
            owner = reg.lookup(scheme).extension.id
            _out(f"  {scheme}: {example} -> {to_gateway_url(reg.resolve(example), authority, owner)}")
        except ProtoregError:
            continue
    if args.allow_private_networks:
        _out("  handlers may fetch loopback and private addresses their host_permissions grant "
             "(--allow-private-networks)")
    if args.reload:
        _out(f"  live reload: watching {', '.join(args.extension)} (edits apply to the next request)")
    _out("Press Ctrl+C to stop.")
    from protoreg.loops import serve_loop, tune_gc

    async def gc_after_startup(_app: Any) -> None:
        tune_gc()

    app.on_startup.append(gc_after_startup)
    try:
        web.run_app(app, sock=sock, print=None, handle_signals=True, loop=serve_loop())
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    _out("protoreg gateway stopped.")
    return EXIT_OK


def _dashboard_session(reg: Any, state: Path, port: int, allow_private_networks: bool = False,
                       allow_networks: tuple[str, ...] = ()) -> Any:
    """The gateway's Session: prompts wait for an answer on the dashboard (protoreg.gateway.grants)."""
    from protoreg.permissions import wait_for_dashboard
    from protoreg.session import Session
    from protoreg.worker.config import WorkerConfig

    config = WorkerConfig(state_dir=str(state), allow_private_networks=allow_private_networks,
                          allow_networks=allow_networks)
    session = Session(reg, config, on_prompt=wait_for_dashboard)
    session.permissions.how_to_decide = f"the dashboard at http://localhost:{port}/#grants"
    return session


def _import_demo(reg: Any, state: Path) -> dict[str, str]:
    """Import the ipfs extension's demo site (its demo-site.car) through its own ``ipfs import`` command, in its
    sandboxed worker; returns example URLs per scheme (none when there is no ipfs extension or the import fails)."""
    entry = getattr(reg, "schemes", {}).get("ipfs")
    demo = entry.extension.root / "demo-site.car" if entry is not None else None
    if entry is None or demo is None or not demo.is_file():
        return {}
    from protoreg.commands import path_input, run_command
    from protoreg.session import Session

    async def run() -> Any:
        async with Session(reg, state_dir=str(state)) as session:
            return await run_command(session, entry.extension.id, "ipfs", ["import"], path_input(demo)[1])

    try:
        result = asyncio.run(run())
    except (KeyError, ProtoregError, OSError) as exc:
        logging.getLogger("protoreg.cli").warning("the ipfs demo site was not imported: %s", exc)
        return {}
    location = dict((k.lower(), v) for k, v in result.headers).get("location")
    if not result.ok or not location:
        logging.getLogger("protoreg.cli").warning("the ipfs demo site was not imported: %s",
                                                  result.output.decode("utf-8", "replace")[:500])
        return {}
    return {"ipfs": location}


def _set_upstreams(reg: Any, state: Path, urls: Sequence[str]) -> tuple[str, ...]:
    """Write the ipfs extension's settings; loopback upstreams need the broker to allow 127.0.0.0/8."""
    from protoreg.broker import Broker

    entry = getattr(reg, "schemes", {}).get("ipfs")
    if entry is None:
        return ()
    data = Broker(data_root=state / "data").data_dir(entry.extension)
    if data is None:
        raise PermissionError(f"{entry.extension.id} has no data directory: its manifest lacks the 'storage' "
                              "permission")
    data.mkdir(parents=True, exist_ok=True)
    (data / "settings.json").write_text(json.dumps({"upstreams": list(urls)}) + "\n")
    loopback = any(u.split("://", 1)[-1].startswith(("127.", "localhost", "[::1]")) for u in urls)
    return ("127.0.0.0/8", "::1/128") if loopback else ()


# -- ipns -------------------------------------------------------------------------------------------------------
def _ipfs_extension_state(args: argparse.Namespace) -> tuple[Any, Path]:
    """The built-in ipfs extension (an ordinary extension directory) and the profile its commands use."""
    from protoreg.bundled import builtin_extension
    from protoreg.profile import default_profile_dir
    from protoreg.registry import Registry

    state = getattr(args, "profile", None) or getattr(args, "state_dir", None)
    return Registry().install(builtin_extension("ipfs")), Path(state) if state else default_profile_dir()


def _printable(output: bytes) -> str:
    from protoreg._text import printable

    # An extension's words reach the user's terminal: no escape sequence or forged line gets through.
    return "\n".join(printable(line) for line in output.decode("utf-8", "replace").rstrip("\n").split("\n"))


def _run_extension_command(reg: Any, state: Path, ext_id: str, name: str, argv: Sequence[str],
                           input_path: Path | None, who: str, *, output_path: Path | None = None,
                           directories: bool = False) -> Any:
    """Run an extension's command in its sandboxed worker (protoreg/commands.py), the input file (or, with
    ``directories``, a directory as a tar) streamed in and, with ``output_path``, its output streamed to that file
    (written to a temporary name, renamed on success). Returns the CommandResult, or an exit code on failure."""
    from protoreg.commands import path_input, run_command
    from protoreg.session import Session

    kind, chunks = "file", None
    if input_path is not None:
        if not (input_path.is_file() or (directories and input_path.is_dir())):
            what = "a file or a directory" if directories else "a file"
            _err(f"{who}: {input_path} does not exist or is not {what}")
            return EXIT_FAIL
        kind, chunks = path_input(input_path)
    partial = output_path.with_name(f".{output_path.name}.partial") if output_path is not None else None

    async def run() -> Any:
        async with Session(reg, state_dir=str(state)) as session:
            if partial is None:
                return await run_command(session, ext_id, name, argv, chunks, input_kind=kind)
            with partial.open("wb") as out:
                return await run_command(session, ext_id, name, argv, chunks, input_kind=kind, output=out.write)

    result = None
    try:
        result = asyncio.run(run())
    except KeyError as exc:
        _err(f"{who}: {exc.args[0]}")
        return EXIT_FAIL
    except OSError as exc:
        _err(f"{who}: {exc}")
        return EXIT_FAIL
    finally:
        if partial is not None and output_path is not None and partial.exists():
            if result is not None and result.ok:
                partial.replace(output_path)
            else:
                partial.unlink()
    if not result.ok:
        text = _printable(result.output)
        _err(f"{who}: {input_path}: {text}" if input_path is not None else f"{who}: {text}")
        return EXIT_FAIL
    return result


def _command_exit(result: Any) -> int:
    if isinstance(result, int):
        return result
    if result.output:
        _out(_printable(result.output))
    return EXIT_OK


def cmd_ipns_import(args: argparse.Namespace) -> int:
    ext, state = _ipfs_extension_state(args)
    path = Path(args.record)
    name = args.name
    if name is None and path.name.startswith("k51"):
        name = path.name.split(".", 1)[0].split("_", 1)[0]  # <name>[_variant].ipns-record, as gateways name them
    argv = ["import", *(["--name", name] if name else [])]
    return _command_exit(_run_extension_command(_registry_of(ext), state, ext.id, "ipns", argv, path,
                                                "protoreg ipns import"))


def cmd_ipns_publish(args: argparse.Namespace) -> int:
    ext, state = _ipfs_extension_state(args)
    argv = ["publish", args.value, "--lifetime", str(args.lifetime), "--ttl", str(args.ttl)]
    return _command_exit(_run_extension_command(_registry_of(ext), state, ext.id, "ipns", argv, Path(args.key),
                                                "protoreg ipns publish"))


def _registry_of(ext: Any) -> Any:
    from protoreg.registry import Registry

    reg = Registry()
    reg.install(ext.root)
    return reg


def cmd_ext_run(args: argparse.Namespace) -> int:
    profile = _profile(args)
    reg = _profile_registry(profile, args.extension_dir)
    result = _run_extension_command(reg, profile.path, args.ext_id, args.command, args.args,
                                    Path(args.input) if args.input else None, "protoreg ext run",
                                    output_path=Path(args.output) if args.output else None, directories=True)
    if not isinstance(result, int) and args.output:
        _out(f"wrote {args.output}")
    return _command_exit(result)


# -- ipfs -------------------------------------------------------------------------------------------------------
def cmd_ipfs_import(args: argparse.Namespace) -> int:
    """Through the ipfs extension's own command, in its sandboxed worker (the CAR streamed in)."""
    ext, state = _ipfs_extension_state(args)
    return _command_exit(_run_extension_command(_registry_of(ext), state, ext.id, "ipfs", ["import"],
                                                Path(args.car), "protoreg ipfs import"))


def cmd_ipfs_add(args: argparse.Namespace) -> int:
    """Through the ipfs extension's own ``ipfs add`` command, in its sandboxed worker: the file, or the directory
    as a tar without its hidden entries, streamed in; the CAR streamed out to the output file."""
    ext, state = _ipfs_extension_state(args)
    src = Path(args.path)
    out = Path(args.output) if args.output else Path(f"{src.resolve().name or 'root'}.car")
    result = _run_extension_command(_registry_of(ext), state, ext.id, "ipfs", ["add"], src, "protoreg ipfs add",
                                    output_path=out, directories=True)
    if isinstance(result, int):
        return result
    head = {k.lower(): _printable(v.encode()) for k, v in result.headers}
    size, blocks = int(head.get("x-ipfs-size", "0")), head.get("x-ipfs-blocks", "?")
    _out(f"{head.get('x-ipfs-root', '?')}  {src} ({size:,} bytes, {blocks} blocks) -> {out}")
    _out(f"import it with: protoreg ipfs import {out}")
    return EXIT_OK


# -- fetch ------------------------------------------------------------------------------------------------------
def cmd_fetch(args: argparse.Namespace) -> int:
    from protoreg.session import Session

    headers = []
    for h in args.header or ():
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            _err(f"protoreg fetch: -H {h!r} is not 'Name: value'")
            return EXIT_USAGE
        headers.append((name.strip(), value.strip()))
    scheme = (args.url.split(":", 1)[0].lower() if ":" in args.url else "")
    if scheme in ("http", "https"):
        _err(f"protoreg fetch: {args.url} is an {scheme} URL, not a custom scheme: protoreg fetch runs the handler "
             "of a registered scheme (ipfs://, web+foo://) and http(s) can never be claimed by an extension. Use "
             "curl for http(s), or fetch a registered scheme's URL (protoreg fetch ipfs://<cid>/)")
        return EXIT_USAGE
    from protoreg.worker.config import WorkerConfig

    profile = _profile(args)
    reg = _profile_registry(profile, args.extension)
    config = WorkerConfig(state_dir=str(profile.path), allow_private_networks=args.allow_private_networks)

    async def run() -> int:
        async with Session(reg, config, profile=profile) as session:
            resp = await session.fetch(args.url, method=args.request or ("POST" if args.data else "GET"),
                                       headers=headers, body=args.data, origin=args.origin, mode=args.mode)
            if args.include:
                _out(f"{resp.status} ({resp.type})")
                for k, v in resp.headers.items():
                    _out(f"{k}: {v}")
                _out()
            out = open(args.output, "wb") if args.output else sys.stdout.buffer
            try:
                async for chunk in resp.stream():
                    out.write(chunk)
            finally:
                if args.output:
                    out.close()
                else:
                    out.flush()
            return EXIT_OK if resp.status < 400 else EXIT_FAIL

    return asyncio.run(run())


# -- doctor -----------------------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    import platform
    from importlib import metadata

    from protoreg.sandbox import probe

    _out(f"Python {platform.python_version()} ({sys.executable}) on {platform.system()} {platform.release()} "
         f"{platform.machine()}")
    for dist in ("aiohttp", "yarl", "multiformats", "pydantic", "ada-url", "mmh3", "cryptography"):
        try:
            _out(f"  {dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            _out(f"  {dist}: MISSING (pip install {dist})")
    report = probe()
    known = [layer.name for layer in report.layers]
    unknown = [name for name in args.require or () if name not in known]
    if unknown:
        _err(f"protoreg doctor: unknown layer(s) {', '.join(map(repr, unknown))} for --require; the known layers "
             f"are: {', '.join(known)}")
        return EXIT_USAGE
    _out("sandbox layers:")
    for layer in report.layers:
        _out(f"  {'active ' if layer.active else 'MISSING'}  {layer.name}: {layer.detail}")
    from protoreg.audit import AuditLog
    from protoreg.sandbox.diskquota import PERIOD
    from protoreg.sandbox.policy import SandboxPolicy
    from protoreg.worker.config import WorkerConfig

    policy, config = SandboxPolicy(), WorkerConfig()
    _out("bounds the host keeps (defaults; WorkerConfig and sandbox_per_extension change them):")
    _out(f"  data dir: {_size(policy.disk_max)} per extension (RLIMIT_FSIZE per file; the host measures the dir "
         f"every {PERIOD:g} s or more and stops a worker over it)")
    _out(f"  storage: {_size(config.storage_quota)} per extension; audit log: {_size(AuditLog().max_bytes)} of live "
         f"records; workers per origin-isolated extension: {config.max_isolated_origins}; concurrent brokered "
         f"fetches per extension: {config.max_concurrent_fetches}")
    missing = [name for name in args.require or () if not report.active(name)]
    if missing:
        _err(f"protoreg doctor: required layer(s) unavailable: {', '.join(missing)}")
        return EXIT_FAIL
    return EXIT_OK


def _size(n: int | None) -> str:
    if n is None:
        return "unbounded"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


# -- profile, stores, trust (docs/trust.md) ---------------------------------------------------------------------
def _profile_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--profile", metavar="DIR", help="the profile directory (default: $XDG_DATA_HOME/protoreg or "
                    "~/.local/share/protoreg)")


def _profile(args: argparse.Namespace) -> Any:
    from protoreg.profile import Profile

    path = getattr(args, "profile", None)
    if path is None and getattr(args, "state_dir", None):
        _err("protoreg: --state-dir is deprecated; use --profile (same directory layout)")
        path = args.state_dir
    return Profile(path)


def _profile_registry(profile: Any, extensions: Sequence[str] | None) -> Any:
    """The profile's verified extensions, plus development directories (-e; default: the built-in handlers and
    the demo when the profile has none), installed unsigned for this run only."""
    reg = profile.registry()
    for problem in profile.problems.values():
        _err(f"protoreg: refused: {problem}")
    bundles = extensions or ([] if profile.installed else default_bundles())
    for bundle in bundles:
        from protoreg.manifest import load_manifest

        if load_manifest(bundle).id in reg.extensions:
            continue  # the profile's installed (verified) copy wins over a default bundle
        ext = reg.install(bundle)
        logging.getLogger("protoreg.cli").info("installed %s from %s (unsigned, development)", ext.id, bundle)
    return reg


def _refresh_in_background(app: Any, profile: Any, reg: Any, interval: float = 2.0) -> None:
    """While serving, apply revocations recorded by `protoreg update` (any process) within ``interval`` seconds."""
    import contextlib

    async def watch() -> None:
        path = profile.path / "installed.json"
        seen = None
        while True:
            with contextlib.suppress(OSError):
                mtime = path.stat().st_mtime_ns
                if mtime != seen:
                    seen = mtime
                    profile._registries.add(reg)
                    profile._apply_update(_empty_report())
            await asyncio.sleep(interval)

    async def start(app: Any) -> None:
        app["protoreg_refresh"] = asyncio.ensure_future(watch())

    async def stop(app: Any) -> None:
        app["protoreg_refresh"].cancel()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _empty_report() -> Any:
    from protoreg.profile import UpdateReport

    return UpdateReport()


def _key_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Missing files are one readable line, not an internal error."""
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except FileNotFoundError as exc:
            _err(f"protoreg {args.command}: {exc.filename}: no such file or directory")
            return EXIT_FAIL
    return wrapped


def cmd_keygen(args: argparse.Namespace) -> int:
    from protoreg.stores import generate_key

    if Path(args.keyfile).exists():
        _err(f"protoreg keygen: {args.keyfile} exists; refusing to overwrite a key")
        return EXIT_FAIL
    priv, pub = generate_key(args.keyfile)
    _out(f"private key: {priv} (mode 0600; keep it secret, back it up)")
    _out(f"public key:  {pub}")
    return EXIT_OK


def cmd_store_init(args: argparse.Namespace) -> int:
    from protoreg.stores import init_store, load_private_key

    root = init_store(args.directory, load_private_key(args.key))
    _out(str(root))
    _err(f"store created in {args.directory}: publish its metadata/ and targets/ directories; keep keys/ private. "
         f"Users trust it with: protoreg trust add NAME {args.directory} --root {root}")
    return EXIT_OK


def cmd_store_delegate(args: argparse.Namespace) -> int:
    from protoreg.stores import delegate, load_private_key, load_public_key, parse_ceiling

    clipped = delegate(args.directory, args.name, load_public_key(args.key), parse_ceiling(args.ceiling),
                       load_private_key(args.signing_key), parent=args.parent)
    _out(f"delegated {args.name}/ to the key {args.key} with ceiling {args.ceiling or 'none'}")
    for c in clipped:
        _out(f"  clipped: {c.permission} (beyond the ceiling of {c.by})")
    return EXIT_OK


def cmd_store_publish(args: argparse.Namespace) -> int:
    from protoreg import bundles
    from protoreg.stores import load_private_key, publish

    src = Path(args.bundle)
    data = src.read_bytes() if src.is_file() else bundles.pack(src)
    path = publish(args.directory, data, load_private_key(args.key), role=args.role)
    b = bundles.parse(data)
    _out(f"published {b.id} {b.version} as {path} (sha256 {b.sha256[:16]}…, role {args.role})")
    return EXIT_OK


def cmd_store_revoke(args: argparse.Namespace) -> int:
    from protoreg.stores import load_private_key, revoke

    role = revoke(args.directory, args.ext_id, load_private_key(args.key))
    _out(f"revoked {args.ext_id} (role {role}); profiles disable it at their next protoreg update")
    return EXIT_OK


def cmd_store_resign(args: argparse.Namespace) -> int:
    from protoreg.stores import resign_online

    resign_online(args.directory)
    _out(f"re-signed the snapshot and timestamp of {args.directory} (valid for 7 days)")
    return EXIT_OK


def cmd_trust_add(args: argparse.Namespace) -> int:
    profile = _profile(args)
    store = profile.trust(args.name, args.location, Path(args.root), ceiling=args.ceiling)
    _out(f"trusted store {store.name} at {store.url} (ceiling: {', '.join(store.ceiling) or 'nothing'})")
    return EXIT_OK


def cmd_trust_list(args: argparse.Namespace) -> int:
    for store in _profile(args).stores.values():
        _out(f"{store.name}  {store.url}  ceiling: {', '.join(store.ceiling) or 'nothing'}")
    return EXIT_OK


def cmd_trust_remove(args: argparse.Namespace) -> int:
    _profile(args).untrust(args.name)
    _out(f"removed store {args.name}; its extensions are disabled at the next protoreg update")
    return EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    profile = _profile(args)
    if args.unsigned:
        if args.from_store:
            _err("protoreg install: --from applies to signed installs, not --unsigned DIR")
            return EXIT_USAGE
        try:
            report = profile.install_unsigned(args.target, accept_risk=args.i_accept_the_risk)
        except Exception as exc:
            if "--i-accept-the-risk" in str(exc):
                _err(f"WARNING: {exc}")
                return EXIT_FAIL
            raise
    else:
        if Path(args.target).is_dir():
            _err(f"protoreg install: {args.target} is a directory. Install signed extensions by id from a trusted "
                 f"store, or a development directory with: protoreg install --unsigned {args.target}")
            return EXIT_USAGE
        if Path(args.target).is_file():
            _err(f"protoreg install: {args.target} is a bundle file, and nobody signed it. Publish it to a store "
                 f"(protoreg store publish STORE {args.target} --key KEY) and install it by id from there, or "
                 f"install it for development with: protoreg install --unsigned {args.target}")
            return EXIT_USAGE
        report = profile.install(args.target, store=args.from_store)
    for line in report.lines():
        (_err if line.lstrip().startswith("warning") else _out)(line)
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    profile = _profile(args)
    if args.approve:
        for line in profile.approve(args.approve).lines():
            _out(line)
        return EXIT_OK
    if args.deny:
        profile.deny(args.deny)
        _out(f"kept the installed version of {args.deny}; the update was refused")
        return EXIT_OK
    report = profile.update()
    for line in report.lines():
        (_err if line.startswith(("refused", "error", "REVOKED")) else _out)(line)
    return EXIT_FAIL if report.errors or report.refused else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    profile = _profile(args)
    profile.registry()  # re-verifies every bundle
    records = profile.installed
    if not records:
        _out(f"no extension is installed in {profile.path}")
    for ext_id, rec in sorted(records.items()):
        state = rec["status"] if rec["status"] != "revoked" else f"DISABLED ({rec['reason']})"
        if ext_id in profile.problems:
            state = f"REFUSED at load: {profile.problems[ext_id]}"
        pending = f"; update {rec['pending']['version']} waits for your decision" if rec.get("pending") else ""
        _out(f"{ext_id} {rec['version']}  {rec['source']}  {state}{pending}")
    return EXIT_FAIL if profile.problems else EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    _profile(args).uninstall(args.ext_id)
    _out(f"uninstalled {args.ext_id} (its storage and data were removed)")
    return EXIT_OK


def cmd_grants(args: argparse.Namespace) -> int:
    from protoreg.permissions import Grantee

    profile = _profile(args)
    ext_id, _, sandbox = args.ext_id.partition("#")  # "ext@x#net": a named sandbox's own decisions
    rec = profile.grants(ext_id)
    sandbox_grantee = None
    if sandbox:
        from protoreg.sandboxes import sandbox_extension

        ext = profile._extension(ext_id, rec)
        if sandbox not in ext.manifest.sandboxes:
            _err(f"protoreg grants: {ext_id} declares no sandbox {sandbox!r} (its sandboxes: "
                 f"{', '.join(sorted(ext.manifest.sandboxes)) or 'none'})")
            return EXIT_FAIL
        sandbox_grantee = Grantee.of(sandbox_extension(ext, sandbox))
        rec = {**rec, "requested": list(sandbox_grantee.requested), "granted": list(sandbox_grantee.granted),
               "clipped": [c for c in rec["clipped"] if c["permission"] in sandbox_grantee.requested],
               "pending": None}
    actions = [(state, perm) for state, perm in (("allow", args.allow), ("deny", args.deny), ("prompt", args.prompt),
                                                 ("revoke", args.revoke)) if perm is not None]
    if args.expires is not None and (not actions or actions[0][0] == "revoke"):
        _err("protoreg grants: --expires goes with --allow, --deny or --prompt (a revoke never expires)")
        return EXIT_USAGE
    manager = profile.decisions()
    grantee = sandbox_grantee or Grantee.from_record(args.ext_id, rec)
    sandboxes: list[str] = []
    if sandbox_grantee is None:
        try:  # with named sandboxes, the record's grants include theirs: the extension's own decisions are fewer
            ext = profile._extension(ext_id, rec)
        except Exception:
            ext = None
        if ext is not None and getattr(ext.manifest, "sandboxes", None):
            grantee = Grantee.of(ext)
            sandboxes = sorted(ext.manifest.sandboxes)
    for state, perm in actions:
        if state == "revoke":
            dec = manager.revoke(grantee, perm)
            _out(f"revoked {perm} for {args.ext_id}: denied from its next call on, until you decide again")
        else:
            dec = manager.decide(grantee, perm, state, expires=args.expires or "never")
            _out(f"{perm} for {args.ext_id}: {dec.describe()}")
        profile.audit("decision", id=args.ext_id, permission=perm, state=dec.state, expires=dec.expires,
                      how="revoke" if state == "revoke" else "cli")
    _out(f"{args.ext_id} {rec['version']} ({rec['source']})")
    _out(f"  requested: {', '.join(rec['requested']) or 'nothing'}")
    _out(f"  granted:   {', '.join(rec['granted']) or 'nothing'}")
    for c in rec["clipped"]:
        _out(f"  clipped:   {c['permission']} (by {c['by']})")
    if rec.get("pending"):
        _out(f"  pending:   {rec['pending']['version']} asks for {', '.join(rec['pending']['new'])}")
    if sandboxes:
        _out(f"  sandboxes: {', '.join(sandboxes)} (their own decisions: protoreg grants {ext_id}#NAME)")
    _out("  decisions:")
    for perm, dec in manager.decisions(grantee).items():
        _out(f"    {perm}: {dec.describe()}")
    return EXIT_OK


def _since(text: str) -> float:
    """--since: an ISO 8601 time, or a span back from now (30m, 1h, 2d)."""
    import time
    from datetime import datetime

    from protoreg.permissions import span_seconds

    span = span_seconds(text)
    if span is not None:
        return time.time() - span  # that long ago
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {text!r}: give an ISO 8601 time (2026-12-31T18:00, "
                                         "2026-12-31T18:00Z) or a span back from now (30m, 1h, 2d)") from None


def cmd_audit(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from protoreg.audit import AuditLog

    profile = _profile(args)
    path = profile.path / "audit.sqlite3"
    if not path.exists():
        _out(f"no capability call has been recorded in {profile.path}")
        return EXIT_OK
    log = AuditLog(path=path)
    try:
        records = log.records(extension=args.extension, permission=args.permission,
                              decision="denied" if args.denied else None, since=args.since, limit=args.limit,
                              newest_first=True)[::-1]
    finally:
        log.close()
    if not records:
        _out("no matching capability call")
        return EXIT_OK
    for r in records:
        when = datetime.fromtimestamp(r.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        perm = f" [{r.permission}]" if r.permission else ""
        _out(f"{when}  {r.decision.upper():7}  {r.extension}  {r.capability} {r.target}{perm}  from {r.origin}")
        if r.decision == "denied" and r.reason:
            _out(f"    why: {r.reason}")
    return EXIT_OK


def _trust_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    prof = argparse.ArgumentParser(add_help=False)
    _profile_option(prof)

    def add(parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str, example: str,
            profile: bool = True) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help, epilog=f"example: {example}",
                               parents=[common, *([prof] if profile else [])],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(fn=_key_errors(fn))
        return sp

    sp = add(sub, "keygen", cmd_keygen, "make an Ed25519 key pair: KEYFILE (private, mode 0600) and KEYFILE.pub",
             "protoreg keygen store.key", profile=False)
    sp.add_argument("keyfile")

    def group(name: str, help: str, example: str) -> Any:
        g = sub.add_parser(name, help=help, description=help, epilog=f"example: {example}", parents=[common])
        g.set_defaults(fn=lambda a: (g.print_help(), EXIT_USAGE)[1])
        return g.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")

    store = group("store", "make and maintain a store (a TUF repository of signed extension bundles)",
                  "protoreg store init ./store --key store.key")
    sp = add(store, "init", cmd_store_init, "create a store in DIR signed by KEYFILE; prints its root metadata path",
             "protoreg store init ./store --key store.key", profile=False)
    sp.add_argument("directory")
    sp.add_argument("--key", required=True, metavar="KEYFILE", help="the store's private key (root and targets)")
    sp = add(store, "delegate", cmd_store_delegate, "delegate the path prefix NAME/ to a child key, with the "
             "ceiling of permissions it may grant (clipped to the parent's)",
             "protoreg store delegate ./store community --key community.key.pub --ceiling storage "
             "--signing-key store.key", profile=False)
    sp.add_argument("directory")
    sp.add_argument("name")
    sp.add_argument("--key", required=True, metavar="CHILD_KEYFILE.pub")
    sp.add_argument("--ceiling", default="", metavar="PERM[,PERM...]",
                    help="permissions and host match patterns the child may grant ('*': all the parent's)")
    sp.add_argument("--signing-key", required=True, metavar="PARENT_KEYFILE")
    sp.add_argument("--parent", default="targets", metavar="ROLE",
                    help="delegate from this child role instead of the store's own (a grandchild; --signing-key is "
                         "then that role's key)")
    sp = add(store, "publish", cmd_store_publish, "sign and publish an extension directory (or a .protoreg bundle)",
             "protoreg store publish ./store examples/hello-scheme --key store.key", profile=False)
    sp.add_argument("directory")
    sp.add_argument("bundle", metavar="BUNDLE_DIR")
    sp.add_argument("--role", default="targets", metavar="NAME", help="a delegated role (default: the store's own)")
    sp.add_argument("--key", required=True, metavar="KEYFILE")
    sp = add(store, "revoke", cmd_store_revoke, "drop an extension from the store: profiles disable it at their "
             "next update", "protoreg store revoke ./store hello@example.org --key store.key", profile=False)
    sp.add_argument("directory")
    sp.add_argument("ext_id", metavar="EXT_ID")
    sp.add_argument("--key", required=True, metavar="KEYFILE")

    sp = add(store, "resign", cmd_store_resign, "re-sign the store's snapshot and timestamp (they expire after 7 "
             "days: run it daily, e.g. from cron)", "protoreg store resign ./store", profile=False)
    sp.add_argument("directory")

    trust = group("trust", "the stores this profile trusts", "protoreg trust add alpha ./store --root "
                  "./store/metadata/1.root.json")
    sp = add(trust, "add", cmd_trust_add, "trust a store: pin its root metadata (obtained out of band)",
             "protoreg trust add alpha https://store.example.org/ --root 1.root.json --ceiling storage")
    sp.add_argument("name")
    sp.add_argument("location", metavar="URL_OR_DIR")
    sp.add_argument("--root", required=True, metavar="ROOT_JSON")
    sp.add_argument("--ceiling", default=None, metavar="PERM[,PERM...]",
                    help="what this store may grant (default: everything it asks for)")
    add(trust, "list", cmd_trust_list, "list trusted stores", "protoreg trust list")
    sp = add(trust, "remove", cmd_trust_remove, "stop trusting a store", "protoreg trust remove alpha")
    sp.add_argument("name")

    sp = add(sub, "install", cmd_install, "install a signed extension from a trusted store, or a development "
             "directory with --unsigned", "protoreg install hello@example.org --from alpha")
    sp.add_argument("target", metavar="EXT_ID|DIR|FILE.protoreg")
    sp.add_argument("--from", dest="from_store", metavar="NAME", help="the trusted store to install from")
    sp.add_argument("--unsigned", action="store_true",
                    help="install a development directory or bundle file without a signature")
    sp.add_argument("--i-accept-the-risk", action="store_true",
                    help="confirm granting permissions to unsigned code")
    sp = add(sub, "update", cmd_update, "refresh trusted stores: revocations, updates, pending decisions",
             "protoreg update --approve hello@example.org")
    sp.add_argument("--approve", metavar="EXT_ID", help="grant what a pending update asks for and install it")
    sp.add_argument("--deny", metavar="EXT_ID", help="refuse a pending update")
    add(sub, "list", cmd_list, "list installed extensions, their source and state (re-verifying each)",
        "protoreg list")
    sp = add(sub, "uninstall", cmd_uninstall, "remove an extension, its storage and data",
             "protoreg uninstall hello@example.org")
    sp.add_argument("ext_id", metavar="EXT_ID")
    sp = add(sub, "grants", cmd_grants, "show requested and effective grants, what which store clipped, and "
             "the decision per permission; change a decision (allow, deny, prompt, revoke) with an expiry",
             "protoreg grants hello@example.org --allow storage --expires 1h\n"
             "         protoreg grants hello@example.org --revoke 'https://api.example.org/*'")
    sp.add_argument("ext_id", metavar="EXT_ID")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--allow", metavar="PERM", help="allow PERM (never beyond what the stores granted)")
    how.add_argument("--deny", metavar="PERM", help="deny PERM")
    how.add_argument("--prompt", metavar="PERM", help="ask each time PERM is used (the app's on_prompt, or the "
                     "dashboard of protoreg serve)")
    how.add_argument("--revoke", metavar="PERM", help="withdraw PERM now: denied from the next call on")
    sp.add_argument("--expires", metavar="never|session|TIME", help="when the decision ends: never (default), "
                    "session (when the app or protoreg serve using this profile stops), an ISO 8601 time or a span "
                    "such as 30m, 1h, 2d")
    sp = add(sub, "audit", cmd_audit, "show recorded capability calls: when and how each was used, and why each "
             "denial happened", "protoreg audit --extension hello@example.org --denied --since 1h")
    sp.add_argument("--extension", metavar="EXT_ID", help="only this extension's calls")
    sp.add_argument("--permission", metavar="PERM", help="only calls of this permission or capability (storage, "
                    "fetch, a host match pattern)")
    sp.add_argument("--denied", action="store_true", help="only denied calls")
    sp.add_argument("--since", metavar="TIME", type=_since, help="only calls since TIME (ISO 8601) or within a span "
                    "back from now (30m, 1h, 2d)")
    sp.add_argument("--limit", type=int, default=200, help="at most this many (the newest; default 200)")


# -- plumbing ---------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protoreg", description="Custom URL schemes with origin isolation.",
                                epilog="example: protoreg check examples/hello-scheme")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    # --debug is accepted after the command too ("protoreg check DIR --debug"), as the error messages suggest.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=f"example: {example}", parents=[common],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("check", cmd_check, "validate an extension directory: every manifest problem, capabilities the code "
             "appears to use without a grant, and lint rules (errors exit 1; warnings exit 0 unless --strict)",
             "protoreg check examples/hello-scheme")
    sp.add_argument("directory", help="the extension directory (containing manifest.json)")
    sp.add_argument("--strict", action="store_true", help="exit 1 on warnings too (unused grants, moot CSP)")
    sp = add("new", cmd_new, "create a working extension: manifest, handler, SVG icon, a pytest test and a README",
             "protoreg new notes --scheme web+notes --template basic")
    sp.add_argument("directory", help="the directory to create (missing or empty)")
    sp.add_argument("--scheme", required=True, help="web+NAME or ext+NAME (lowercase letters)")
    sp.add_argument("--template", default="basic", choices=["basic", "streaming", "sandboxed"],
                    help="basic: an HTML page per host; streaming: streamed bodies; sandboxed: no grants and a "
                         "strict CSP (default basic)")
    sp.add_argument("--id", help="the extension id (default DIRNAME@example.org)")
    sp.add_argument("--name", help="the extension's name")
    sp = add("pack", cmd_pack, "write an extension directory as one reproducible bundle file (what stores publish "
             "and install accepts), listing every file's sha256", "protoreg pack notes -o notes.protoreg")
    sp.add_argument("directory", help="the extension directory (containing manifest.json)")
    sp.add_argument("-o", "--output", metavar="FILE", help="the bundle file (default ID-VERSION.protoreg)")
    add("schema", cmd_schema, "print the JSON Schema of manifest.json", "protoreg schema > manifest.schema.json")
    sp = add("serve", cmd_serve, "run the gateway with the built-in handlers and the demo extension",
             "protoreg serve --port 8080")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--extension", "-e", action="append", help="install this extension directory (repeatable); "
                    "default: the built-in handlers and the demo")
    sp.add_argument("--state-dir", help="deprecated alias of --profile")
    sp.add_argument("--allow-private-networks", action="store_true", help=PRIVATE_HELP)
    sp.add_argument("--upstream", action="append", metavar="URL",
                    help="a trustless gateway the ipfs handler fetches missing blocks and records from (repeatable)")
    sp.add_argument("--reload", action="store_true", help="watch the -e directories and reload an extension when "
                    "its files change (requests in flight finish on the old code; a broken edit shows its error "
                    "page until it is fixed)")
    _profile_option(sp)
    sp = add("fetch", cmd_fetch, "fetch a custom URL through its handler, like curl",
             "protoreg fetch -i web+hello://world/")
    sp.add_argument("url")
    sp.add_argument("-X", "--request", metavar="METHOD")
    sp.add_argument("-H", "--header", action="append", metavar="'Name: value'")
    sp.add_argument("-d", "--data")
    sp.add_argument("-i", "--include", action="store_true", help="print the status line and headers")
    sp.add_argument("-o", "--output", metavar="FILE")
    sp.add_argument("--origin", help="fetch as this initiator origin, e.g. web+a://x")
    sp.add_argument("--mode", default="navigate", choices=["cors", "no-cors", "same-origin", "navigate"])
    sp.add_argument("--extension", "-e", action="append", help="install this extension directory (repeatable); "
                    "default: the profile's extensions, or the built-in handlers and the demo when it has none")
    sp.add_argument("--state-dir", help="deprecated alias of --profile")
    sp.add_argument("--allow-private-networks", action="store_true", help=PRIVATE_HELP)
    _profile_option(sp)
    ipfs = sub.add_parser("ipfs", help="the built-in ipfs handler's block store", parents=[common],
                          description="Import CAR files into, or build CAR files for, the ipfs:// handler.",
                          epilog="example: protoreg ipfs add ./site && protoreg ipfs import site.car")
    ipfs_sub = ipfs.add_subparsers(dest="ipfs_command", metavar="SUBCOMMAND")
    ipfs.set_defaults(fn=lambda a: (ipfs.print_help(), EXIT_USAGE)[1])
    sp = ipfs_sub.add_parser("import", help="verify and import a CARv1/CARv2 file", parents=[common],
                             epilog="example: protoreg ipfs import site.car")
    sp.set_defaults(fn=cmd_ipfs_import)
    sp.add_argument("car")
    sp.add_argument("--state-dir", help="deprecated alias of --profile")
    _profile_option(sp)
    sp = ipfs_sub.add_parser("add", help="build UnixFS from a file or directory (kubo defaults) and write a CAR",
                             parents=[common],
                             epilog="example: protoreg ipfs add ./site -o site.car")
    sp.set_defaults(fn=cmd_ipfs_add)
    sp.add_argument("path", help="a file or a directory (hidden entries, names starting with '.', are left out)")
    sp.add_argument("-o", "--output", help="the CAR to write (default: <name>.car)")
    _profile_option(sp)
    ext_p = sub.add_parser("ext", help="run an extension's own commands", parents=[common],
                           description="Run a command an extension declares in its manifest (\"commands\"), in "
                                       "its sandboxed worker with its own grants.",
                           epilog="example: protoreg ext run -i rec.ipns-record ipfs@protoreg ipns import")
    ext_sub = ext_p.add_subparsers(dest="ext_command", metavar="SUBCOMMAND")
    ext_p.set_defaults(fn=lambda a: (ext_p.print_help(), EXIT_USAGE)[1])
    sp = ext_sub.add_parser("run", help="run EXT's command NAME with ARGS", parents=[common],
                            epilog="example: protoreg ext run -i rec.ipns-record ipfs@protoreg ipns import")
    sp.set_defaults(fn=cmd_ext_run)
    sp.add_argument("ext_id")
    sp.add_argument("command")
    sp.add_argument("args", nargs=argparse.REMAINDER)
    sp.add_argument("-i", "--input", help="a file, or a directory (as a tar, without its hidden entries), streamed "
                    "to the command as its input")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the command's output to FILE")
    sp.add_argument("--extension-dir", "-e", action="append", help="install this extension directory first")
    _profile_option(sp)
    ipns_p = sub.add_parser("ipns", help="IPNS records for the built-in ipns:// handler", parents=[common],
                            description="Import or publish signed IPNS records.",
                            epilog="example: protoreg keygen k.pem && protoreg ipns publish --key k.pem /ipfs/bafy...")
    ipns_sub = ipns_p.add_subparsers(dest="ipns_command", metavar="SUBCOMMAND")
    ipns_p.set_defaults(fn=lambda a: (ipns_p.print_help(), EXIT_USAGE)[1])
    sp = ipns_sub.add_parser("import", help="verify and store an IPNS record", parents=[common],
                             epilog="example: protoreg ipns import k51....ipns-record")
    sp.set_defaults(fn=cmd_ipns_import)
    sp.add_argument("record")
    sp.add_argument("--name", help="the name (k51...) the record is for (default: from the file name or pubKey)")
    sp.add_argument("--state-dir", help="deprecated alias of --profile")
    _profile_option(sp)
    sp = ipns_sub.add_parser("publish", help="sign a new, higher-sequence record with an ed25519 key",
                             parents=[common], epilog="example: protoreg ipns publish --key k.pem /ipfs/bafy...")
    sp.set_defaults(fn=cmd_ipns_publish)
    sp.add_argument("value", help="/ipfs/<cid>[/path] or /ipns/<name>")
    sp.add_argument("--key", required=True, help="an ed25519 private key file (protoreg keygen)")
    sp.add_argument("--lifetime", type=float, default=48, help="hours until the record expires (default 48)")
    sp.add_argument("--ttl", type=int, default=300, help="seconds readers may cache it (default 300)")
    sp.add_argument("--state-dir", help="deprecated alias of --profile")
    _profile_option(sp)
    sp = add("doctor", cmd_doctor, "report Python, dependencies and which sandbox layers this machine offers",
             "protoreg doctor --require landlock --require seccomp")
    sp.add_argument("--require", action="append", metavar="LAYER",
                    help="exit 1 unless this layer is available (fds, namespaces, filesystem, rlimits, cgroup, "
                         "no_new_privs, landlock, seccomp)")
    _trust_parsers(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "fn", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except ProtoregError as exc:
        if args.debug:
            traceback.print_exc()
        _err(f"protoreg {args.command}: {exc}")
        return EXIT_FAIL
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        _err(f"protoreg {args.command}: internal error: {type(exc).__name__}: {exc}. "
             "Rerun with --debug for the traceback, and please report it")
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
