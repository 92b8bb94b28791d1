"""The ipfs extension's host-side commands (manifest "commands"), run in its own sandboxed worker:

    protoreg ipfs import FILE.car                            -> ipfs import                 (the CAR streamed in)
    protoreg ipfs add PATH [-o FILE.car]                     -> ipfs add                    (the file, or the
                                                                directory as a tar, streamed in; the CAR streamed out)
    protoreg ipns import FILE.ipns-record [--name k51...]   -> ipns import [--name N]      (the file streamed in)
    protoreg ipns publish --key KEY.pem /ipfs/<cid>         -> ipns publish VALUE [...]    (the key streamed in)

Records and blocks go to this extension's data directory, where the ipns:// and ipfs:// handlers read (and verify)
them. ``ipfs add`` stores nothing: it builds UnixFS as kubo's ``ipfs add`` does (hidden names skipped) and answers
with the CAR, its blocks spooled to a temporary file in the data directory (the root CID, which the CAR's header
names first, is known only at the end), so memory stays bounded whatever the input's size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tarfile
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from ipfs_core import IpfsError, ipns

from protoreg import Request, Response, runtime


def _path(name: ipns.Name):  # type: ignore[no-untyped-def]
    return runtime.data_dir() / "ipns" / f"{name.text}.ipns-record"


def _stored(name: ipns.Name) -> ipns.Record | None:
    try:
        return ipns.verify_record(name, _path(name).read_bytes())
    except (OSError, ipns.RecordRefused):
        return None


def _store(record: ipns.Record) -> None:
    current = _stored(record.name)
    if current is not None and not record.better_than(current):
        raise ValueError(f"the stored record for {record.name.text} (sequence {current.sequence}) is as new as or "
                         f"newer than this one (sequence {record.sequence}); kept it")
    path = _path(record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_bytes(record.raw)
    os.replace(tmp, path)


def _describe(verb: str, r: ipns.Record) -> str:
    return (f"{verb} ipns://{r.name.text}/ -> {r.value} (sequence {r.sequence}, valid until "
            f"{r.validity.isoformat()}, ttl {r.ttl_seconds}s), signature verified\n")


def _opt(args: list[str], flag: str, default: str | None = None) -> str | None:
    if flag in args:
        i = args.index(flag)
        if i + 1 < len(args):
            return args[i + 1]
    return default


class _StreamReader:
    """A blocking file object over the request body, for the synchronous CAR reader running in a thread."""

    def __init__(self, chunks, loop) -> None:  # type: ignore[no-untyped-def]
        self._chunks = chunks.__aiter__()
        self._loop = loop
        self._buf = bytearray()
        self._eof = False

    async def _next(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if not chunk:
                self._eof = True
            self._buf += chunk
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


async def _ipfs_add(command: Request) -> Response:
    from ipfs_core.cids import v1_base32
    from ipfs_core.importer import add_file, add_tar, car_header, spool_blocks

    kind = command.headers.get("X-Protoreg-Input")
    if kind not in ("file", "directory"):
        return Response.error(400, "usage: ipfs add < FILE or DIRECTORY (protoreg ipfs add PATH streams it in)")
    add = add_tar if kind == "directory" else add_file
    reader = _StreamReader(command.stream(), asyncio.get_running_loop())
    spool = tempfile.TemporaryFile(dir=runtime.data_dir())  # closed once the body is sent
    try:
        built, blocks = await asyncio.to_thread(spool_blocks, lambda emit: add(reader, emit), spool)  # type: ignore[arg-type]
    except (IpfsError, tarfile.TarError, ValueError, OSError) as exc:
        spool.close()
        return Response.error(400, f"ipfs add: {exc}")
    except BaseException:
        spool.close()
        raise

    async def car():  # type: ignore[no-untyped-def]
        try:
            yield car_header(built)
            spool.seek(0)
            while chunk := await asyncio.to_thread(spool.read, 256 * 1024):
                yield chunk
        finally:
            spool.close()

    return Response(car(), headers={"Content-Type": "application/vnd.ipld.car; version=1",
                                    "X-Ipfs-Root": v1_base32(built.cid), "X-Ipfs-Size": str(built.size),
                                    "X-Ipfs-Blocks": str(blocks)})


async def _ipfs(command: Request, args: list[str]) -> Response:
    if args[:1] == ["add"]:
        return await _ipfs_add(command)
    if args[:1] != ["import"]:
        return Response.error(400, "usage: ipfs import < FILE.car | ipfs add < FILE or DIRECTORY")
    from ipfs_core.blocks import BlockStore
    from ipfs_core.car import import_car
    from ipfs_core.cids import v1_base32

    reader = _StreamReader(command.stream(), asyncio.get_running_loop())
    store = BlockStore(runtime.data_dir() / "blocks")
    try:
        report = await asyncio.to_thread(import_car, reader, store)  # type: ignore[arg-type]
    except IpfsError as exc:
        return Response.error(400, str(exc))
    roots = ", ".join(v1_base32(r) for r in report.roots)
    lines = [f"imported {report.blocks} blocks ({report.new_blocks} new, {report.bytes:,} bytes), every one verified",
             f"roots: {roots}", *(f"  open ipfs://{v1_base32(r)}/" for r in report.roots)]
    # 201 and the first root's URL: what protoreg serve shows as the example of the imported demo site
    headers = {"Location": f"ipfs://{v1_base32(report.roots[0])}/"} if report.roots else {}
    return Response("\n".join(lines) + "\n", status=201, headers=headers)


async def runCommand(command: Request) -> Response:
    args = json.loads(command.headers.get("X-Protoreg-Args", "[]"))
    if command.url.scheme == "protoreg-cmd-ipfs":
        return await _ipfs(command, args)
    try:
        if args[:1] == ["import"]:
            raw = await command.read()
            name_text = _opt(args, "--name")
            if name_text is None:
                entry = ipns.IpnsEntry()
                entry.ParseFromString(raw)
                if not entry.HasField("pubKey"):
                    return Response.error(400, "the record carries no public key: give the name with --name k51...")
                name = ipns.name_for_public_key(entry.pubKey)
            else:
                name, _ = ipns.parse_name(name_text)
            record = ipns.verify_record(name, raw)
            _store(record)
            return Response(_describe("imported", record))
        if args[:1] == ["publish"] and len(args) >= 2:
            value = args[1]
            ipns.parse_value(value)
            key = serialization.load_pem_private_key(await command.read(), None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                return Response.error(400, "the key is not an ed25519 private key (create one with protoreg keygen)")
            name, _ = ipns.create_record(key, value, 0)
            current = _stored(name)
            seq = 0 if current is None else current.sequence + 1
            _, raw = ipns.create_record(key, value, seq,
                                        lifetime=dt.timedelta(hours=float(_opt(args, "--lifetime", "48") or 48)),
                                        ttl=dt.timedelta(seconds=int(_opt(args, "--ttl", "300") or 300)))
            record = ipns.verify_record(name, raw)
            _store(record)
            return Response(_describe("published", record))
    except (IpfsError, ValueError, TypeError) as exc:
        return Response.error(400, str(exc))
    return Response.error(400, "usage: ipns import [--name NAME] < RECORD | ipns publish VALUE [--lifetime H] "
                               "[--ttl S] < KEY.pem")
