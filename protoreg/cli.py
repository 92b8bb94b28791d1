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

from protoreg.errors import ManifestError, ProtoregError

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
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
    findings = infer(files, manifest)
    result = "OK" if not findings else "problems found"
    _out(f"{args.directory}: {result}: {manifest.name} {manifest.version} (id {manifest.id}, code {digest[:12]})")
    for h in manifest.protocol_handlers:
        how = f"script {h.uriHandlerScript}" if h.uriHandlerScript else f"redirects to {h.uriTemplate}"
        trust = ", potentially trustworthy" if h.uriIsTrustworthy else ""
        _out(f"  {h.protocol}: {h.name} ({how}{trust})")
    grants = [*manifest.permissions, *manifest.host_permissions]
    _out(f"  grants: {', '.join(grants) if grants else 'none'}")
    _out(f"  python files: {len(files)}")
    if manifest.ignored_keys:
        _out(f"  ignored keys (not used by protoreg): {', '.join(manifest.ignored_keys)}")
    if findings:
        _err(f"{args.directory}: problems found: the code appears to use {len(findings)} capabilit"
             f"{'y' if len(findings) == 1 else 'ies'} the manifest does not grant:")
        for finding in findings:
            _err(f"  {finding}")
        return EXIT_FAIL
    return EXIT_OK


# -- schema -----------------------------------------------------------------------------------------------------
def cmd_schema(args: argparse.Namespace) -> int:
    from protoreg.manifest import manifest_json_schema

    _out(json.dumps(manifest_json_schema(), indent=2))
    return EXIT_OK


# -- serve ------------------------------------------------------------------------------------------------------
def default_bundles() -> list[Path]:
    """The built-in handlers and the bundled demo extension."""
    found = [p.parent for p in sorted((ROOT / "handlers").glob("*/manifest.json"))]
    found += [p.parent for p in sorted((ROOT / "examples").glob("*/manifest.json"))]
    return found


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
    from protoreg.registry import Registry
    from protoreg.worker.config import WorkerConfig

    reg = Registry()
    for bundle in args.extension or default_bundles():
        ext = reg.install(bundle)
        logging.getLogger("protoreg.cli").info("installed %s from %s", ext.id, bundle)
    state = Path(args.state_dir) if args.state_dir else _default_state()
    examples = _import_demo(reg, state)
    sock = _listen(args.host, args.port)
    if isinstance(sock, str):
        _err(f"protoreg serve: {sock}")
        return EXIT_FAIL
    port = sock.getsockname()[1]
    app = create_app(reg, config=WorkerConfig(state_dir=str(state),
                                              allow_private_networks=args.allow_private_networks))
    app["protoreg_examples"] = examples
    authority = f"localhost:{port}"
    _out(f"protoreg gateway: dashboard at http://{authority}/ (state in {state})")
    for scheme in sorted(reg.schemes):
        example = examples.get(scheme, f"{scheme}://example/")
        try:
            _out(f"  {scheme}: {example} -> {to_gateway_url(reg.resolve(example), authority)}")
        except ProtoregError:
            continue
    if args.allow_private_networks:
        _out("  handlers may fetch loopback and private addresses their host_permissions grant "
             "(--allow-private-networks)")
    _out("Press Ctrl+C to stop.")
    try:
        web.run_app(app, sock=sock, print=None, handle_signals=True)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    _out("protoreg gateway stopped.")
    return EXIT_OK


def _default_state() -> Path:
    from protoreg.ipfs_tools import default_state_dir

    return default_state_dir()


def _import_demo(reg: object, state: Path) -> dict[str, str]:
    """Import the bundled IPFS demo site into the ipfs extension's store; returns example URLs per scheme."""
    from protoreg.ipfs_tools import DEMO_CAR, ipfs_core, store_for

    entry = getattr(reg, "schemes", {}).get("ipfs")
    if entry is None or not DEMO_CAR.exists():
        return {}
    with DEMO_CAR.open("rb") as f:
        report = ipfs_core().car.import_car(f, store_for(entry.extension, state))
    return {"ipfs": f"ipfs://{ipfs_core().cids.v1_base32(report.roots[0])}/"}


# -- ipfs -------------------------------------------------------------------------------------------------------
def cmd_ipfs_import(args: argparse.Namespace) -> int:
    from protoreg.ipfs_tools import IPFS_BUNDLE, ipfs_core, store_for
    from protoreg.registry import Registry

    core = ipfs_core()
    ext = Registry().install(IPFS_BUNDLE)
    store = store_for(ext, Path(args.state_dir) if args.state_dir else _default_state())
    path = Path(args.car)
    if not path.is_file():
        _err(f"protoreg ipfs import: {path} does not exist or is not a file")
        return EXIT_FAIL
    total = path.stat().st_size
    show = total > 8 * 1024 * 1024 or sys.stderr.isatty()

    def progress(pos: int) -> None:
        if show:
            sys.stderr.write(f"\r  {pos / total:6.1%} of {total / 2**20:.1f} MiB")

    with path.open("rb") as f:
        try:
            report = core.car.import_car(f, store, progress)
        except core.IpfsError as exc:
            _err(f"protoreg ipfs import: {path}: {exc}")
            return EXIT_FAIL
    if show:
        sys.stderr.write("\n")
    roots = ", ".join(core.cids.v1_base32(r) for r in report.roots)
    _out(f"imported {report.blocks} blocks ({report.new_blocks} new, {report.bytes:,} bytes), every one verified")
    _out(f"roots: {roots}")
    for r in report.roots:
        _out(f"  open ipfs://{core.cids.v1_base32(r)}/")
    return EXIT_OK


def cmd_ipfs_add(args: argparse.Namespace) -> int:
    from protoreg.ipfs_tools import ipfs_core

    core = ipfs_core()
    src = Path(args.path)
    if not src.exists():
        _err(f"protoreg ipfs add: {src} does not exist")
        return EXIT_FAIL
    built, blocks = core.importer.add_to_blocks(src)
    out = Path(args.output) if args.output else Path(f"{src.name or 'root'}.car")
    with out.open("wb") as f:
        for part in core.car.write_car([built.cid], blocks):
            f.write(part)
    _out(f"{core.cids.v1_base32(built.cid)}  {src} ({built.size:,} bytes, {len(blocks)} blocks) -> {out}")
    _out(f"import it with: protoreg ipfs import {out}")
    return EXIT_OK


# -- fetch ------------------------------------------------------------------------------------------------------
def cmd_fetch(args: argparse.Namespace) -> int:
    from protoreg.registry import Registry
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
    reg = Registry()
    for bundle in args.extension or default_bundles():
        reg.install(bundle)
    from protoreg.worker.config import WorkerConfig

    state = Path(args.state_dir) if args.state_dir else _default_state()
    config = WorkerConfig(state_dir=str(state), allow_private_networks=args.allow_private_networks)

    async def run() -> int:
        async with Session(reg, config) as session:
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
    missing = [name for name in args.require or () if not report.active(name)]
    if missing:
        _err(f"protoreg doctor: required layer(s) unavailable: {', '.join(missing)}")
        return EXIT_FAIL
    return EXIT_OK


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

    sp = add("check", cmd_check, "validate an extension directory: every manifest problem, and capabilities the "
             "code appears to use without a grant",
             "protoreg check examples/hello-scheme")
    sp.add_argument("directory", help="the extension directory (containing manifest.json)")
    add("schema", cmd_schema, "print the JSON Schema of manifest.json", "protoreg schema > manifest.schema.json")
    sp = add("serve", cmd_serve, "run the gateway with the built-in handlers and the demo extension",
             "protoreg serve --port 8080")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--extension", "-e", action="append", help="install this extension directory (repeatable); "
                    "default: the built-in handlers and the demo")
    sp.add_argument("--state-dir", help="where storage and extension data live (default: ~/.local/share/protoreg)")
    sp.add_argument("--allow-private-networks", action="store_true", help=PRIVATE_HELP)
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
                    "default: the built-in handlers and the demo")
    sp.add_argument("--state-dir", help="where storage and extension data live, e.g. the blocks `protoreg ipfs "
                    "import` stored (default: ~/.local/share/protoreg, as protoreg serve)")
    sp.add_argument("--allow-private-networks", action="store_true", help=PRIVATE_HELP)
    ipfs = sub.add_parser("ipfs", help="the built-in ipfs handler's block store", parents=[common],
                          description="Import CAR files into, or build CAR files for, the ipfs:// handler.",
                          epilog="example: protoreg ipfs add ./site && protoreg ipfs import site.car")
    ipfs_sub = ipfs.add_subparsers(dest="ipfs_command", metavar="SUBCOMMAND")
    ipfs.set_defaults(fn=lambda a: (ipfs.print_help(), EXIT_USAGE)[1])
    sp = ipfs_sub.add_parser("import", help="verify and import a CARv1/CARv2 file", parents=[common],
                             epilog="example: protoreg ipfs import site.car")
    sp.set_defaults(fn=cmd_ipfs_import)
    sp.add_argument("car")
    sp.add_argument("--state-dir", help="default: ~/.local/share/protoreg (as protoreg serve)")
    sp = ipfs_sub.add_parser("add", help="build UnixFS from a file or directory (kubo defaults) and write a CAR",
                             parents=[common],
                             epilog="example: protoreg ipfs add ./site -o site.car")
    sp.set_defaults(fn=cmd_ipfs_add)
    sp.add_argument("path")
    sp.add_argument("-o", "--output", help="the CAR to write (default: <name>.car)")
    sp = add("doctor", cmd_doctor, "report Python, dependencies and which sandbox layers this machine offers",
             "protoreg doctor --require landlock --require seccomp")
    sp.add_argument("--require", action="append", metavar="LAYER",
                    help="exit 1 unless this layer is available (fds, userns+netns, rlimits, no_new_privs, "
                         "landlock, seccomp)")
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
