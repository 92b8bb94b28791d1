"""The "store" sandbox: the only process of this extension with storage (its own data directory)."""

import base64

from protoreg import runtime
from protoreg.errors import UnknownMessage


def _path(cid):
    if not str(cid).isalnum():
        raise ValueError("a CID is alphanumeric")
    return runtime.data_dir() / f"{cid}.bin"


async def handleMessage(name, payload):
    if name == "get":
        path = _path(payload["cid"])
        return base64.b64encode(path.read_bytes()).decode() if path.exists() else None
    if name == "put":
        _path(payload["cid"]).write_bytes(base64.b64decode(payload["data"]))
        hits = int(await runtime.storage.get("puts") or b"0") + 1
        await runtime.storage.set("puts", str(hits))
        return hits
    raise UnknownMessage(name)
