"""Webmail latency: the message list and a message with a photo, over real HTTPS.

Starts the two-operator world of the webmail tests (IdP, operators, directory), logs in as the
nurse, fills her INBOX with N messages (half of them with a 1.5 MB photo), then times
sequential requests of the list page, a message page, the photo and an autocomplete query.

    PYTHONPATH=src:tests python bench/web.py [--messages 200] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from web.harness import web_login, world


async def main(messages: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with world(Path(tmp)) as w:
            storage = w.ops["chu"].storage
            assert storage is not None
            mb = await storage.accounts.get_mailbox(w.users["infirmiere"].address)
            assert mb is not None
            photo = os.urandom(1_500_000)
            for i in range(messages):
                msg = EmailMessage()
                msg["From"] = f"Dr {i} <dr{i}@medecin.mssante.test>"
                msg["To"] = mb.address
                msg["Subject"] = f"Message {i}"
                msg.set_content("Bonjour\n" * 20)
                if i % 2:
                    msg.add_attachment(photo, maintype="image", subtype="jpeg",
                                       filename="p.jpg")  # fmt: skip
                blob = await storage.blobs.put(msg.as_bytes(policy=SMTP))
                await storage.messages.deliver(blob, [mb.mailbox_id])
            async with w.client("chu") as c:
                assert (await web_login(w, c, "infirmiere")).status_code == 303
                bal = {"bal": mb.address, "dossier": "INBOX"}
                cases = {
                    "list (50 rows)": ("/courrier", bal),
                    "message + photo": ("/message", {**bal, "uid": str(messages)}),
                    "photo 1.5 MB": ("/piece", {**bal, "uid": str(messages), "n": "0"}),
                    "autocomplete": ("/annuaire/suggestions", {"q": "lefev"}),
                }
                for name, (path, params) in cases.items():
                    times = []
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        resp = await c.get(path, params=params)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert resp.status_code == 200, (path, resp.status_code)
                    times.sort()
                    print(
                        f"{name:18s} median {statistics.median(times):6.1f} ms"
                        f"  p90 {times[int(len(times) * 0.9) - 1]:6.1f} ms"
                    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--rounds", type=int, default=30)
    a = p.parse_args()
    asyncio.run(main(a.messages, a.rounds))
