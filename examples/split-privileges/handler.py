"""web+blocks://<cid>/ shows one IPFS raw block (CIDv1, base32, sha256), verified by hash.

The handler parses untrusted bytes and holds no capability at all: the manifest gives it no permission and no host
permission. It asks its two sandboxes, each a worker process with only its own grants:

- "store" (permission "storage"): a cache of verified blocks in its own data directory;
- "net" (host permission for https://trustless-gateway.link/* only): fetches a raw block.

web+blocks://probe/ shows that this process itself can use neither the network nor storage.
"""

import base64
import hashlib
import json

from protoreg import Request, Response, runtime
from protoreg.errors import MessageError, PermissionDenied

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
#: Blocks up to this size are cached (a sandbox message carries at most 192 KiB of JSON).
CACHE_MAX = 128 * 1024


def sha256_of_cid(cid: str) -> bytes:
    """The sha256 digest named by a CIDv1 (multibase base32 "b...", raw codec 0x55, multihash sha2-256)."""
    if not cid.startswith("b") or len(cid) > 100:
        raise ValueError("expected a base32 CIDv1 (b...)")
    bits = value = 0
    out = bytearray()
    for ch in cid[1:]:
        value = (value << 5) | _B32.index(ch)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    if out[:4] != b"\x01\x55\x12\x20" or len(out) != 36:
        raise ValueError("expected a CIDv1 of a raw block hashed with sha2-256")
    return bytes(out[4:])


async def probe() -> Response:
    outcome = {}
    # Each of these is refused: `protoreg check` is told so by the comment (it would report them otherwise).
    for name, attempt in (("fetch", lambda: runtime.fetch("https://trustless-gateway.link/")),  # protoreg: expect-denied  # noqa: E501
                          ("storage", lambda: runtime.storage.get("x"))):  # protoreg: expect-denied
        try:
            await attempt()
            outcome[name] = "allowed"
        except PermissionDenied as exc:
            outcome[name] = f"PermissionDenied: {exc}"
    try:
        outcome["data_dir"] = str(runtime.data_dir())  # protoreg: expect-denied
    except PermissionDenied as exc:
        outcome["data_dir"] = f"PermissionDenied: {exc}"
    return Response(json.dumps(outcome), headers={"content-type": "application/json"})


async def handleRequest(request: Request) -> Response:
    cid = request.url.host or ""
    if cid == "probe":
        return await probe()
    try:
        digest = sha256_of_cid(cid)
    except ValueError as exc:
        return Response(f"web+blocks://<cid>/: {exc}\n", status=400)
    try:
        cached = await runtime.sandbox("store").call("get", {"cid": cid})
        if cached is not None:
            block, source = base64.b64decode(cached), "cache"
        else:
            block, source = base64.b64decode(await runtime.sandbox("net").call("get_block", {"cid": cid})), "network"
    except MessageError as exc:
        return Response(f"could not get {cid}: {exc}\n", status=502)
    if hashlib.sha256(block).digest() != digest:
        return Response(f"the block fetched for {cid} does not match its hash: refused\n", status=502)
    if source == "network" and len(block) <= CACHE_MAX:
        await runtime.sandbox("store").call("put", {"cid": cid, "data": base64.b64encode(block).decode()})
    return Response(block, headers={"content-type": "application/octet-stream", "x-block-source": source})
