"""Folders, message list, reading, attachments, flags, receipts, compose.

Every route checks the session's right on the BAL (``WebContext.mailbox``) and writes an audit
event for each access to messages (health data): list, read, attachment, send.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from caducee.core.errors import InvalidInput
from caducee.core.model import Folder, Mailbox, StoredMessage
from caducee.documents.ins import mask_ins, nir_key_ok
from caducee.documents.mime import split_headers
from caducee.storage.interfaces import FlagMode
from caducee.web.context import Forbidden, WebContext
from caducee.web.mailview import MessageSummary, attachment_part, parse_message, summarise
from caducee.web.receipts import build_read_receipt, receipt_status
from caducee.web.sessions import WebSession
from caducee.web.submit import Draft, OutAttachment, TrustLookup, send, split_addresses

__all__ = [
    "attachment",
    "compose_page",
    "compose_send",
    "flags",
    "message_list",
    "message_page",
    "read_receipt",
    "switch",
]

_FOLDER_FR = {
    "INBOX": "Boîte de réception",
    "Sent": "Envoyés",
    "Drafts": "Brouillons",
    "Trash": "Corbeille",
}
_PAGE = 50


def _int(value: object) -> int:
    """A number from a query or form field; 0 for anything else (then "unknown")."""
    text = str(value or "0")
    return int(text) if text.isdigit() and len(text) < 12 else 0


def folder_label(name: str) -> str:
    return _FOLDER_FR.get(name, name)


def mail_url(path: str, **params: object) -> str:
    return f"{path}?{urlencode({k: v for k, v in params.items() if v not in (None, '')})}"


async def _folder(ctx: WebContext, mb: Mailbox, name: str) -> Folder:
    f = await ctx.storage.messages.get_folder(mb.mailbox_id, name)
    if f is None:
        raise Forbidden("Dossier inconnu.")
    return f


async def _head(ctx: WebContext, m: StoredMessage, limit: int = 16384) -> bytes:
    out = b""
    async for chunk in ctx.storage.blobs.stream(m.blob, 0, min(m.size, limit)):
        out += chunk
    end = out.find(b"\r\n\r\n")
    return out if end < 0 else out[: end + 4]


def _matches(s: MessageSummary, q: str) -> bool:
    hay = f"{s.subject} {s.sender} {s.recipients}".lower()
    return all(w in hay for w in q.lower().split())


async def _current(ctx: WebContext, session: WebSession, request: Request) -> Mailbox:
    address = request.query_params.get("bal") or session.current
    if not address:
        raise Forbidden("Aucune boîte aux lettres.")
    mb = await ctx.mailbox(session, address, "r")
    session.current = mb.address
    return mb


async def message_list(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    mb = await _current(ctx, session, request)
    name = request.query_params.get("dossier", "INBOX")
    q = request.query_params.get("q", "").strip()[:200]
    page = max(0, _int(request.query_params.get("page")))
    folder = await _folder(ctx, mb, name)
    folders = await ctx.storage.messages.list_folders(mb.mailbox_id)
    stored = list(reversed(await ctx.storage.messages.list_messages(folder.folder_id)))
    rows: list[MessageSummary] = []
    if q:
        for m in stored[:2000]:
            s = summarise(m.uid, m.flags, m.size, await _head(ctx, m))
            if _matches(s, q):
                rows.append(s)
        more = False
    else:
        chunk = stored[page * _PAGE : (page + 1) * _PAGE]
        rows = [summarise(m.uid, m.flags, m.size, await _head(ctx, m)) for m in chunk]
        more = len(stored) > (page + 1) * _PAGE
    await ctx.audit(session, "web.folder.list", mb.address, folder=name, search=str(bool(q)))
    return ctx.render(
        request,
        "list.html",
        {
            "boxes": await ctx.mailboxes(session),
            "current": mb.address,
            "mailbox": mb,
            "folder": folder,
            "folders": sorted(
                ((f, folder_label(f.name)) for f in folders),
                key=lambda fl: (
                    ["INBOX", "Sent", "Drafts", "Trash"].index(fl[0].name)
                    if fl[0].name in _FOLDER_FR
                    else 9
                ),
            ),
            "folder_label": folder_label(name),
            "rows": rows,
            "q": q,
            "page": page,
            "more": more,
            "url": mail_url,
        },
        session=session,
    )


async def _load(
    ctx: WebContext, session: WebSession, request: Request, need: str = "r"
) -> tuple[Mailbox, Folder, StoredMessage, bytes]:
    params = request.query_params
    mb = await ctx.mailbox(session, params.get("bal", ""), need)
    folder = await _folder(ctx, mb, params.get("dossier", "INBOX"))
    try:
        uid = int(params.get("uid", ""))
    except ValueError:
        raise Forbidden("Message inconnu.") from None
    found = await ctx.storage.messages.get_messages(folder.folder_id, [uid])
    if not found:
        raise Forbidden("Message inconnu.")
    return mb, folder, found[0], await ctx.storage.blobs.get(found[0].blob)


async def message_page(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    mb, folder, m, raw = await _load(ctx, session, request)
    view = parse_message(raw)
    rights = dict((b.address, r) for b, r in await ctx.mailboxes(session)).get(mb.address, "")
    if "\\Seen" not in m.flags and "s" in rights:
        await ctx.storage.messages.store_flags(folder.folder_id, [m.uid], ["\\Seen"], FlagMode.ADD)
    receipts = []
    if folder.special_use == "\\Sent" or folder.name == "Sent":
        rcpts = [a.rpartition("<")[2].rstrip(">") for a in view.to + view.cc]
        receipts = await receipt_status(ctx.storage, mb.mailbox_id, view.message_id, rcpts)
    await ctx.audit(
        session,
        "web.message.read",
        mb.address,
        folder=folder.name,
        uid=str(m.uid),
        message_id=view.message_id,
        documents=str(len(view.documents)),
    )
    return ctx.render(
        request,
        "message.html",
        {
            "boxes": await ctx.mailboxes(session),
            "current": mb.address,
            "mailbox": mb,
            "folder": folder,
            "folder_label": folder_label(folder.name),
            "uid": m.uid,
            "flagged": "\\Flagged" in m.flags,
            "mdn_sent": "$MDNSent" in m.flags,
            "v": view,
            "receipts": receipts,
            "url": mail_url,
            "ins_masked": mask_ins(view.patient_ins) if view.patient_ins else "",
        },
        session=session,
    )


_SAFE_NAME = re.compile(r"[^\w.\- ]+")


async def attachment(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    mb, folder, m, raw = await _load(ctx, session, request)
    try:
        index = int(request.query_params.get("n", ""))
    except ValueError:
        raise Forbidden("Pièce jointe inconnue.") from None
    part = attachment_part(raw, index)
    if part is None:
        raise Forbidden("Pièce jointe inconnue.")
    name, ctype, data = part
    inline = request.query_params.get("apercu") == "1" and ctype in (
        "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf",
    )  # fmt: skip
    await ctx.audit(
        session,
        "web.attachment.get",
        mb.address,
        folder=folder.name,
        uid=str(m.uid),
        index=str(index),
    )
    ascii_name = _SAFE_NAME.sub("_", name.encode("ascii", "replace").decode()) or "piece-jointe"
    disposition = "inline" if inline else "attachment"
    headers = {
        "Content-Disposition": (
            f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        ),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if inline and ctype == "application/pdf":
        # the browser's own PDF viewer: nothing else may load, no framing
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    else:
        headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return Response(
        data, media_type=ctype if inline else "application/octet-stream", headers=headers
    )


async def _form_csrf(ctx: WebContext, request: Request, session: WebSession) -> dict[str, object]:
    form = await request.form(
        max_files=20, max_fields=50, max_part_size=ctx.cfg.smtp.max_message_bytes
    )
    try:
        if not session.check_csrf(str(form.get("csrf") or "")):
            await ctx.audit(session, "web.csrf.refused", request.url.path, outcome="refused")
            raise Forbidden("Jeton anti-falsification (CSRF) invalide : rechargez la page.")
        files: list[OutAttachment] = []
        for f in form.getlist("pieces"):
            if isinstance(f, UploadFile) and f.filename:
                ctype = f.content_type or "application/octet-stream"
                files.append(OutAttachment(f.filename[:200], ctype, await f.read()))
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()
    return {**fields, "_files": files}


async def flags(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    form = await _form_csrf(ctx, request, session)
    action = str(form.get("action", ""))
    mb = await ctx.mailbox(session, str(form.get("bal", "")), "r")
    folder = await _folder(ctx, mb, str(form.get("dossier", "INBOX")))
    uid = _int(form.get("uid"))
    changes = {
        "non-lu": ("s", ["\\Seen"], FlagMode.REMOVE),
        "lu": ("s", ["\\Seen"], FlagMode.ADD),
        "suivi": ("w", ["\\Flagged"], FlagMode.ADD),
        "non-suivi": ("w", ["\\Flagged"], FlagMode.REMOVE),
        "supprimer": ("t", ["\\Deleted"], FlagMode.ADD),
    }
    if action not in changes:
        raise Forbidden("Action inconnue.")
    right, fl, mode = changes[action]
    await ctx.mailbox(session, mb.address, "r" + right)
    if action == "supprimer" and folder.name != "Trash":
        trash = await ctx.storage.messages.get_folder(mb.mailbox_id, "Trash")
        if trash is not None:
            await ctx.storage.messages.copy(folder.folder_id, [uid], trash.folder_id, move=True)
    else:
        await ctx.storage.messages.store_flags(folder.folder_id, [uid], fl, mode)
        if action == "supprimer":
            await ctx.storage.messages.expunge(folder.folder_id, [uid])
    await ctx.audit(
        session, "web.message.flags", mb.address, folder=folder.name, uid=str(uid), action=action
    )
    if action in ("supprimer", "non-lu"):
        return RedirectResponse(mail_url("/courrier", bal=mb.address, dossier=folder.name), 303)
    return RedirectResponse(mail_url("/message", bal=mb.address, dossier=folder.name, uid=uid), 303)


async def read_receipt(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    form = await _form_csrf(ctx, request, session)
    mb = await ctx.mailbox(session, str(form.get("bal", "")), "rp")
    folder = await _folder(ctx, mb, str(form.get("dossier", "INBOX")))
    uid = _int(form.get("uid"))
    found = await ctx.storage.messages.get_messages(folder.folder_id, [uid])
    if not found:
        raise Forbidden("Message inconnu.")
    m = found[0]
    headers, _ = split_headers(await _head(ctx, m, 65536))
    if "$MDNSent" not in m.flags and headers.get("Disposition-Notification-To"):
        to, data = build_read_receipt(headers, mb.address, mb.display_name)
        await _send_raw(ctx, session, mb, to, data)
        await ctx.storage.messages.store_flags(folder.folder_id, [uid], ["$MDNSent"], FlagMode.ADD)
    return RedirectResponse(mail_url("/message", bal=mb.address, dossier=folder.name, uid=uid), 303)


async def _send_raw(
    ctx: WebContext, session: WebSession, mb: Mailbox, to: str, data: bytes
) -> None:
    """Sends a ready-made notification (an MDN) from ``mb`` to ``to``."""
    from datetime import UTC, datetime, timedelta

    from caducee.core.model import QueueRecipient

    domain = to.rpartition("@")[2].lower()
    blob = await ctx.storage.blobs.put(data)
    if domain in {d.lower() for d in ctx.cfg.domains}:
        target = await ctx.storage.accounts.get_mailbox(to)
        if target is not None:
            await ctx.storage.messages.deliver(blob, [target.mailbox_id])
    elif ctx.is_listed(domain):
        expires = datetime.now(UTC) + timedelta(seconds=ctx.cfg.smtp.queue_lifetime_seconds)
        await ctx.storage.queue.enqueue(
            mb.address,
            [QueueRecipient(to, notify=frozenset({"NEVER"}))],
            blob,
            domain,
            expires=expires,
        )
        if ctx.wake is not None:
            ctx.wake()
    await ctx.audit(session, "web.mdn.sent", mb.address, to=to)


async def compose_page(
    ctx: WebContext, request: Request, *, error: str = "", values: dict[str, str] | None = None
) -> Response:
    session = ctx.session_of(request)
    params = request.query_params
    boxes = [(b, r) for b, r in await ctx.mailboxes(session) if "p" in r or "i" in r]
    if not boxes:
        raise Forbidden("Aucune boîte ne vous permet d'envoyer.")
    v = dict.fromkeys(_COMPOSE_FIELDS, "") | {"bal": session.current, "to": params.get("a", "")}
    forwarded: list[str] = []
    mode = params.get("mode", "")
    if mode in ("repondre", "transferer") and params.get("uid"):
        mb, folder, m, raw = await _load(ctx, session, request)
        view = parse_message(raw)
        v["bal"] = mb.address
        quoted = "\n".join("> " + line for line in view.text.splitlines()[:200])
        if mode == "repondre":
            v["to"] = (
                view.sender.rpartition("<")[2].rstrip(">") if "<" in view.sender else view.sender
            )
            v["subject"] = (
                view.subject if view.subject.lower().startswith("re:") else f"Re: {view.subject}"
            )
            v["in_reply_to"] = view.message_id
            v["references"] = view.references
        else:
            v["subject"] = f"Tr: {view.subject}"
            v["fwd_bal"], v["fwd_dossier"], v["fwd_uid"] = mb.address, folder.name, str(m.uid)
            forwarded = [a.filename for a in view.attachments]
        when = view.date.strftime("%d/%m/%Y %H:%M") if view.date else ""
        v["body"] = f"\n\nLe {when}, {view.sender} a écrit :\n{quoted}"
        v["ins"] = view.patient_ins
        await ctx.audit(
            session,
            "web.message.read",
            mb.address,
            folder=folder.name,
            uid=str(m.uid),
            purpose=mode,
        )
    if values:
        v.update(values)
    return ctx.render(
        request,
        "compose.html",
        {
            "boxes": await ctx.mailboxes(session),
            "senders": boxes,
            "current": v["bal"],
            "v": v,
            "error": error,
            "forwarded": forwarded,
        },
        status=400 if error else 200,
        session=session,
    )


_COMPOSE_FIELDS = (
    "bal", "to", "cc", "subject", "body", "ins", "in_reply_to", "references",
    "fwd_bal", "fwd_dossier", "fwd_uid",
)  # fmt: skip


async def _forwarded(
    ctx: WebContext, session: WebSession, values: dict[str, str]
) -> list[OutAttachment]:
    """The attachments of the message being forwarded (read right on its BAL checked)."""
    mb = await ctx.mailbox(session, values["fwd_bal"], "r")
    folder = await _folder(ctx, mb, values["fwd_dossier"] or "INBOX")
    found = await ctx.storage.messages.get_messages(folder.folder_id, [_int(values["fwd_uid"])])
    if not found:
        raise Forbidden("Message inconnu.")
    raw = await ctx.storage.blobs.get(found[0].blob)
    out: list[OutAttachment] = []
    for i in range(len(parse_message(raw).attachments)):
        part = attachment_part(raw, i)
        if part is not None:
            out.append(OutAttachment(*part))
    await ctx.audit(session, "web.message.read", mb.address, folder=folder.name,
                    uid=values["fwd_uid"], purpose="transferer")  # fmt: skip
    return out


async def compose_send(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    form = await _form_csrf(ctx, request, session)
    values = {k: str(form.get(k, "")) for k in _COMPOSE_FIELDS}
    try:
        mb = await ctx.mailbox(session, values["bal"], "p")
    except Forbidden:
        mb = await ctx.mailbox(session, values["bal"], "i")
    uploads = form.get("_files")
    files = (
        [f for f in uploads if isinstance(f, OutAttachment)] if isinstance(uploads, list) else []
    )
    if values["fwd_uid"]:
        files = await _forwarded(ctx, session, values) + files
    total = sum(len(f.data) for f in files)
    ins = "".join(values["ins"].split())
    try:
        if total > ctx.max_upload:
            raise InvalidInput(
                f"Pièces jointes trop volumineuses ({total // 1024} Kio ; "
                f"limite {ctx.max_upload // 1024} Kio)."
            )
        if ins and not nir_key_ok(ins):
            raise InvalidInput("INS invalide : 15 caractères (NIR ou NIA) avec une clé correcte.")
        draft = Draft(
            sender=mb,
            sender_name=session.display_name if mb.type == "PER" else (mb.display_name or ""),
            to=tuple(split_addresses(values["to"])),
            cc=tuple(split_addresses(values["cc"])),
            subject=values["subject"][:300],
            body=values["body"],
            attachments=tuple(files),
            delivery_receipt=form.get("ar") is not None,
            read_receipt=form.get("al") is not None,
            patient_ins=ins,
            in_reply_to=values["in_reply_to"],
            references=values["references"],
        )
        result = await send(
            ctx.cfg, ctx.storage, TrustLookup(ctx.is_listed), session.login, draft, wake=ctx.wake
        )
    except InvalidInput as exc:
        return await compose_page(ctx, request, error=str(exc), values=values)
    sent = await ctx.storage.messages.get_folder(mb.mailbox_id, "Sent")
    uid = ""
    if sent is not None:
        msgs = await ctx.storage.messages.list_messages(sent.folder_id)
        uid = str(msgs[-1].uid) if msgs else ""
    del result
    return RedirectResponse(
        mail_url("/message", bal=mb.address, dossier="Sent", uid=uid, envoye=1), 303
    )


async def switch(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    address = request.query_params.get("bal", "")
    mb = await ctx.mailbox(session, address, "r")
    session.current = mb.address
    return RedirectResponse(mail_url("/courrier", bal=mb.address), 303)
