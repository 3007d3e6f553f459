"""Child process of the crash test: delivers messages concurrently and prints, after each
``deliver`` returns, the UID it got, until it is killed. Not a test module."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from caducee.storage import open_postgres, open_sqlite


async def main(engine: str, target: str, keyring: str, mailbox_id: int) -> None:
    if engine == "sqlite":
        st = await open_sqlite(Path(target), Path(keyring))
    else:
        st = await open_postgres(target, Path(keyring), pool_size=4)
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while True:
            counter += 1
            n = counter
            body = f"Subject: crash {n}\r\n\r\n".encode() + b"x" * (n % 3 * 40_000)
            ref = await st.blobs.put(body, durable=n % 2 == 0)  # both paths
            (msg,) = await st.messages.deliver(ref, [mailbox_id], dedup_key=f"c{n}")
            sys.stdout.write(f"{msg.uid} {len(body)}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
