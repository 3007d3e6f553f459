"""The integration agent: mailbox (IMAP IDLE) -> XDM -> validation -> patient -> adapters ->
MDN (RFC 8098, ANS profile) -> IMAP folder. Also an optional MLLP listener for ORU^R01 lab
results carrying a CR-BIO CDA, which go through the same pipeline.

Exactly once: each message moves through recorded stages (``integrated`` -> ``answered`` ->
``filed``) and each document through ``delivering`` -> ``delivered``; a restart resumes at
the recorded stage and adapters are idempotent on a stable control id, so a crash never
integrates a document twice nor loses one. Messages are only moved out of the inbox after
their outcome is recorded and answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import logging
import os
import ssl
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr

from caducee.core.errors import CaduceeError, InvalidInput
from caducee.documents.cda import CdaDocument
from caducee.documents.inspect import xdm_attachments
from caducee.documents.mdn import build_mdn_bytes, mdn_requested
from caducee.documents.mime import leaves, split_headers
from caducee.documents.xdm import read_xdm
from caducee.integration.adapters import Adapter
from caducee.integration.adapters.fhir import FhirAdapter
from caducee.integration.adapters.folder import FolderAdapter
from caducee.integration.adapters.mllp import MllpAdapter
from caducee.integration.config import AgentConfig
from caducee.integration.imapclient import ImapClient, ImapSettings
from caducee.integration.oru import OruListener
from caducee.integration.patients import load_patient_index
from caducee.integration.pipeline import Pipeline, Provenance
from caducee.integration.state import AgentState
from caducee.integration.submit import SubmissionSession, SubmissionSettings, parse_server

__all__ = ["Agent", "Prepared", "build_adapters", "message_key"]

log = logging.getLogger("caducee.integration")
_DEPRECATED = "deprecated"


def _decoded(value: object) -> str:
    """An RFC 2047 header as text (compat32 parsing leaves encoded words)."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError):
        return str(value)


@dataclass(frozen=True)
class Prepared:
    """A fetched message, parsed: its headers, key, documents, or an early error (906)."""

    raw: bytes
    msg: Message
    key: str
    error: int | None = None
    prov: Provenance | None = None
    docs: tuple[tuple[CdaDocument, bool], ...] = ()


def _is_xdm(ctype: str, name: str | None) -> bool:
    lowered = (name or "").lower()
    return lowered.endswith("ihe_xdm.zip") or (
        ctype in ("application/zip", "application/x-zip-compressed") and lowered.endswith(".zip")
    )


def message_key(raw: bytes, msg: Message) -> str:
    mid = str(msg.get("Message-ID", "")).strip()
    if mid:
        return "mid:" + hashlib.sha256(mid.encode()).hexdigest()
    return "sha:" + hashlib.sha256(raw).hexdigest()


def build_adapters(cfg: AgentConfig) -> list[Adapter]:
    adapters: list[Adapter] = []
    for i, ad in enumerate(cfg.adapters):
        o = ad.options
        name = str(o.get("name", f"{ad.type}{i}"))
        if ad.type == "mllp":
            tls = None
            if o.get("tls"):
                tls = ssl.create_default_context(cafile=o.get("ca_file"))
            adapters.append(
                MllpAdapter(
                    str(o["host"]),
                    int(o["port"]),
                    timeout=float(o.get("timeout", 30)),
                    tls=tls,
                    receiving_app=str(o.get("receiving_app", "LPS")),
                    receiving_facility=str(o.get("receiving_facility", "LPS")),
                    name=name,
                    connections=int(o.get("connections", cfg.concurrency)),
                )
            )
        elif ad.type == "fhir":
            token = os.environ.get(str(o["token_env"])) or None if o.get("token_env") else None
            adapters.append(
                FhirAdapter(
                    str(o["base_url"]),
                    token=token,
                    ca_file=str(o["ca_file"]) if o.get("ca_file") else None,
                    patient_system=str(o.get("patient_system", "urn:caducee:patient-local-id")),
                    name=name,
                )
            )
        else:
            adapters.append(FolderAdapter(str(o["path"]), name=name))
    return adapters


class Agent:
    def __init__(self, cfg: AgentConfig, adapters: list[Adapter] | None = None) -> None:
        self.cfg = cfg
        self.state = AgentState(cfg.state)
        self.pipeline = Pipeline(
            state=self.state,
            index=load_patient_index(cfg.patients),
            adapters=adapters if adapters is not None else build_adapters(cfg),
            cda_schema=str(cfg.cda_schema) if cfg.cda_schema else None,
            require_conformant=cfg.require_conformant,
        )
        self.imap_settings = ImapSettings(
            cfg.imap_host,
            cfg.imap_port,
            cfg.imap_user,
            cfg.imap_password,
            tls=cfg.imap_tls,
            ca_file=cfg.imap_ca_file,
        )
        self.smtp: SubmissionSettings | None = None
        if cfg.smtp_server and cfg.smtp_user and cfg.smtp_password is not None:
            host, port = parse_server(cfg.smtp_server)
            self.smtp = SubmissionSettings(
                host, port, cfg.smtp_user, cfg.smtp_password, ca_file=cfg.smtp_ca_file
            )
        self._patients_mtime = cfg.patients.stat().st_mtime_ns
        self._session: SubmissionSession | None = None
        self._mdn_lock = asyncio.Lock()
        self.idling = asyncio.Event()  # set while waiting in IMAP IDLE (watch mode)
        self.concurrency = cfg.concurrency
        self.processed = 0
        self.batch = 20  # messages fetched (and filed) per IMAP round trip

    # ----------------------------------------------------------------- one message
    def prepare(self, raw: bytes) -> Prepared:
        """Parse one message and its XDM archive(s): pure CPU work, run in a worker thread
        (the next messages of a batch are prepared while the current one waits for its ACK)."""
        msg, _ = split_headers(raw)
        key = message_key(raw, msg)
        try:
            _, parts = leaves(raw)
            xdms = [p.decoded() for p in parts if _is_xdm(p.content_type, p.filename)]
            if not xdms:  # unusual MIME structure: let the email package have a go
                xdms = xdm_attachments(email.message_from_bytes(raw, policy=compat32))
            if not xdms:
                return Prepared(raw, msg, key, error=906)
            body: str | None = None
            pdf = None
            for part in parts:
                if part.content_type == "text/plain" and body is None and part.filename is None:
                    charset = part.headers.get_content_charset() or "utf-8"
                    body = part.decoded().decode(charset, "replace")
                elif part.content_type == "application/pdf" and pdf is None:
                    pdf = part.decoded()
            prov = Provenance(
                key=key,
                sender=parseaddr(str(msg.get("From", "")))[1] or None,
                recipient=self.cfg.address,
                reply_to=parseaddr(str(msg.get("Reply-To", "")))[1] or None,
                subject=_decoded(msg.get("Subject")),
                body=body,
                pdf=pdf,
            )
            docs: list[tuple[CdaDocument, bool]] = []
            for data in xdms:
                pkg = read_xdm(data)
                if any("hash" in p or "size" in p for p in pkg.problems):
                    return Prepared(raw, msg, key, error=906)
                docs.extend(
                    (e.cda, _DEPRECATED in e.status.lower())
                    for e in pkg.entries
                    if e.cda is not None
                )
            if not docs:
                return Prepared(raw, msg, key, error=906)
            return Prepared(raw, msg, key, prov=prov, docs=tuple(docs))
        except (InvalidInput, UnicodeError, LookupError) as exc:
            log.info("message %s refused: %s", key[:16], type(exc).__name__)
            return Prepared(raw, msg, key, error=906)

    async def _integrate(self, prep: Prepared) -> int | None:
        if prep.error is not None or prep.prov is None:
            return prep.error or 906
        first_error: int | None = None
        for cda, delete in prep.docs:
            err = await self.pipeline.integrate(cda, prep.prov, delete=delete)
            if err is not None and first_error is None:
                first_error = err
        return first_error

    async def _answer(self, raw: bytes, msg: Message, error: int | None) -> None:
        if mdn_requested(msg) is None:
            return
        if self.smtp is None:
            log.warning("MDN requested but no [submission] configured; not answering")
            return
        to, mdn = build_mdn_bytes(raw, final_recipient=self.cfg.address, error=error)
        async with self._mdn_lock:  # the submission session is used by one sender at a time
            if self._session is None:
                self._session = SubmissionSession(self.smtp)
            await asyncio.to_thread(self._session.send, mdn, self.cfg.address, [to], dsn=False)

    async def process_message(self, prep: Prepared) -> tuple[str, int | None]:
        """Integrate and answer one prepared message (up to the ``answered`` stage).

        Returns the message key and its outcome; the caller files it, then records ``filed``.
        """
        key, msg = prep.key, prep.msg
        row = self.state.message(key)
        if row is not None and row.stage == "filed":
            return key, row.error  # the same message again (resent): only file it
        if row is None:
            error = await self._integrate(prep)
            self.state.set_message(key, "integrated", error)
            stage = "integrated"
        else:
            error, stage = row.error, row.stage
        if stage == "integrated" and mdn_requested(msg) is not None:
            await self._answer(prep.raw, msg, error)
            self.state.set_message(key, "answered", error)
        return key, error

    async def _process_batch(self, client: ImapClient, uids: list[int]) -> None:
        fetched = await client.uid_fetch_many(uids)
        present = [u for u in uids if u in fetched]
        # Prepare every message of the batch in worker threads (CPU), then integrate up to
        # ``concurrency`` messages at a time; a message waits for the earlier messages of the
        # batch that touch the same document set (or are the same message), so replacements
        # and deletions keep their order.
        prepared = [
            asyncio.ensure_future(asyncio.to_thread(self.prepare, fetched[u])) for u in present
        ]
        outcomes: dict[int, tuple[str, int | None]] = {}
        gate = asyncio.Semaphore(self.concurrency)

        async def one(uid: int, prep: Prepared, deps: list[asyncio.Future[None]]) -> None:
            results = await asyncio.gather(*deps, return_exceptions=True)
            if any(isinstance(r, BaseException) for r in results):
                return  # an earlier message of the same set failed: retry both later
            async with gate:
                outcomes[uid] = await self.process_message(prep)

        running: list[tuple[set[str], asyncio.Future[None]]] = []
        errors: list[BaseException] = []
        try:
            for uid, task in zip(present, prepared, strict=True):
                prep = await task
                keys = {prep.key} | {
                    str(c.set_id) if c.set_id else c.unique_id for c, _ in prep.docs
                }
                deps = [t for k, t in running if k & keys]
                running.append((keys, asyncio.ensure_future(one(uid, prep, deps))))
            results = await asyncio.gather(*(t for _, t in running), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
        finally:
            for task in prepared:
                task.cancel()
            for _, fut in running:
                fut.cancel()
            if self._session is not None:  # one submission connection per batch of MDNs
                session, self._session = self._session, None
                await asyncio.to_thread(session.close)
        for folder in {self._folder(err) for _, err in outcomes.values()}:
            batch = [u for u, (_, err) in outcomes.items() if self._folder(err) == folder]
            await client.uid_move(batch, folder)
            for uid in batch:
                key, err = outcomes[uid]
                self.state.set_message(key, "filed", err)
                self.processed += 1
                log.info(
                    "message %s filed: %s", key[:16], "processed" if err is None else f"error {err}"
                )
        if errors:
            raise errors[0]

    def _folder(self, error: int | None) -> str:
        return self.cfg.integrated_folder if error is None else self.cfg.rejected_folder

    # ----------------------------------------------------------------- the loops
    async def run_once(self) -> int:
        """Process what is in the inbox now; return the number of messages filed."""
        client = ImapClient(self.imap_settings)
        await client.connect()
        try:
            return await self._drain(client)
        finally:
            await client.close()

    def _reload_patients_if_changed(self) -> None:
        """The practice may add a patient after a 902: pick up the new index without restart."""
        try:
            mtime = self.cfg.patients.stat().st_mtime_ns
        except OSError:
            return
        if mtime != self._patients_mtime:
            self.pipeline.index = load_patient_index(self.cfg.patients)
            self._patients_mtime = mtime

    async def _drain(self, client: ImapClient) -> int:
        before = self.processed
        self._reload_patients_if_changed()
        await client.ensure_mailbox(self.cfg.integrated_folder)
        await client.ensure_mailbox(self.cfg.rejected_folder)
        await client.select(self.cfg.inbox)
        while True:
            uids = await client.uid_search_all()
            if not uids:
                break
            for i in range(0, len(uids), self.batch):
                await self._process_batch(client, uids[i : i + self.batch])
        return self.processed - before

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the mailbox until ``stop`` is set; reconnect with backoff on failures."""
        oru_server = await self.start_oru() if self.cfg.oru_listen else None
        backoff = 1.0
        try:
            while not stop.is_set():
                client = ImapClient(self.imap_settings)
                try:
                    await client.connect()
                    backoff = 1.0
                    while not stop.is_set():
                        await self._drain(client)
                        self.idling.set()
                        await client.idle(self.cfg.idle_seconds, stop)
                        self.idling.clear()
                except (CaduceeError, OSError, TimeoutError) as exc:
                    log.warning("agent: %s; retrying in %.0fs", exc, backoff)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 60.0)
                finally:
                    await client.close()
        finally:
            if oru_server is not None:
                oru_server.close()
                await oru_server.wait_closed()
            await self.pipeline.close()
            self.state.close()

    async def close(self) -> None:
        await self.pipeline.close()
        self.state.close()

    # ----------------------------------------------------------------- ORU^R01 over MLLP
    async def start_oru(self) -> asyncio.Server:
        """Start the MLLP listener for lab results ([oru] listen); ``oru_port`` is its port."""
        host, port = parse_server(self.cfg.oru_listen or "")
        listener = OruListener(self.pipeline)
        server = await asyncio.start_server(
            listener.handle_connection, host, port, limit=64 * 1024 * 1024
        )
        self.oru_port = server.sockets[0].getsockname()[1]
        return server
