"""An embedding app: install extensions, then fetch custom URLs from Python.

    python examples/embed.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import protoreg

HERE = Path(__file__).resolve().parent


async def main() -> None:
    reg = protoreg.Registry()
    for name in ("hello-scheme", "echo-streaming", "demo-site"):
        ext = reg.install(HERE / name)
        print(f"installed {ext.id}: {', '.join(h.protocol for h in ext.handlers)}")

    async with protoreg.Session(reg) as session:
        resp = await session.fetch("web+hello://world/")
        print(resp.status, resp.origin, "secure" if resp.secure_context else "not secure")
        print(await resp.text())

        async def upload():
            for i in range(3):
                yield f"chunk {i}\n".encode()

        echoed = await session.fetch("web+echo://x/", method="POST", body=upload())
        print((await echoed.text()).strip())

        # A page on web+demo://a fetching web+demo://b is cross-origin: the handler sends no CORS header.
        try:
            await session.fetch("web+demo://b/style.css", origin="web+demo://a", mode="cors")
        except protoreg.PolicyError as exc:
            print("blocked:", exc)


if __name__ == "__main__":
    asyncio.run(main())
