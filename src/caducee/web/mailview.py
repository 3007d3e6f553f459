"""What the webmail shows of a stored message: headers, a safe body, attachments, documents.

- HTML bodies are cleaned with ``nh3`` (an allow-list sanitiser, the Rust ``ammonia``
  library): no script, no style, no event handler, no form, no frame; ``img`` is removed so no
  remote content (tracking pixels) is ever fetched; links keep their text and gain
  ``rel="noopener noreferrer"``. The page's Content-Security-Policy (``img-src 'self'``) blocks
  what a sanitiser bug would let through.
- Attachments are numbered in walk order (the same numbering for the download route).
- An ``IHE_XDM.zip`` (or a CDA XML) is read with ``caducee.documents`` and shown as a document
  whose patient identity (names, INS, birth date) comes first.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message, MIMEPart
from email.policy import default as default_policy
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

import nh3

from caducee.core.errors import CaduceeError
from caducee.documents.cda import read_cda
from caducee.documents.inspect import describe_cda
from caducee.documents.narrative import render_narrative
from caducee.documents.xdm import read_xdm

__all__ = [
    "Attachment",
    "DocumentView",
    "MessageSummary",
    "MessageView",
    "attachment_part",
    "parse_message",
    "sanitise_html",
    "summarise",
]

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "s", "small", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRS = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
_REMOTE = re.compile(r"<\s*(img|image|video|audio|source|link|iframe|object|embed)\b", re.I)
_PREVIEW = {"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"}


def sanitise_html(html: str) -> tuple[str, bool]:
    """Safe HTML, and whether remote or embedded content was removed."""
    blocked = bool(_REMOTE.search(html)) or "url(" in html.lower()
    clean = nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "noscript"},
        attributes=_ATTRS,
        url_schemes={"https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return clean, blocked


def _decode(value: object) -> str:
    return "" if value is None else " ".join(str(value).split())


def _date(msg: Message) -> datetime | None:
    try:
        return parsedate_to_datetime(str(msg.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class MessageSummary:
    uid: int
    subject: str
    sender: str
    recipients: str
    date: datetime | None
    seen: bool
    flagged: bool
    answered: bool
    has_attachment: bool
    size: int


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(msg, EmailMessage)  # noqa: S101 - policy default makes EmailMessage
    return msg


def summarise(uid: int, flags: frozenset[str], size: int, head: bytes) -> MessageSummary:
    """A list row from the header block of a message."""
    msg = _parse(head)
    ctype = str(msg.get("Content-Type", "")).lower()
    return MessageSummary(
        uid=uid,
        subject=_decode(msg.get("Subject")) or "(sans objet)",
        sender=_short(_decode(msg.get("From"))),
        recipients=", ".join(_short(a) for a in _decode(msg.get("To")).split(",") if a.strip()),
        date=_date(msg),
        seen="\\Seen" in flags,
        flagged="\\Flagged" in flags,
        answered="\\Answered" in flags,
        has_attachment="multipart/mixed" in ctype or "multipart/report" in ctype,
        size=size,
    )


def _short(value: str) -> str:
    """``Name <address>`` -> ``Name``; a bare address stays."""
    name, addr = parseaddr(value)
    return name or addr or value


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int

    @property
    def previewable(self) -> bool:
        return self.content_type in _PREVIEW

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/") and self.previewable


@dataclass(frozen=True)
class DocumentView:
    """A CDA document (alone or inside an XDM) as the reader sees it."""

    title: str
    patient_name: str
    birth_date: str
    sex: str
    ins: str
    ins_kind: str
    ins_qualified: bool
    author: str
    effective_time: str
    narrative_html: str
    problems: tuple[str, ...] = ()


@dataclass
class MessageView:
    subject: str
    sender: str
    to: list[str]
    cc: list[str]
    date: datetime | None
    message_id: str
    text: str = ""
    html: str = ""
    remote_blocked: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    documents: list[DocumentView] = field(default_factory=list)
    mdn_to: str | None = None
    patient_ins: str = ""
    references: str = ""


def _fmt_date(value: str | None) -> str:
    if value and len(value) >= 8 and value[:8].isdigit():
        return f"{value[6:8]}/{value[4:6]}/{value[:4]}"
    return value or ""


def _document(info: dict[str, Any], narrative: str, problems: tuple[str, ...]) -> DocumentView:
    p = info["patient"]
    names = " ".join(x for x in (p.get("used_name") or p.get("birth_name"),) if x)
    given = p.get("first_birth_forename") or ""
    birth = p.get("birth_name")
    full = f"{names} {given}".strip()
    if birth and p.get("used_name") and birth != p.get("used_name"):
        full += f" (née {birth})"
    author = info.get("author") or {}
    return DocumentView(
        title=str(info.get("title") or (info.get("type") or {}).get("display") or "Document"),
        patient_name=full or "(identité absente)",
        birth_date=_fmt_date(p.get("birth_date")),
        sex={"F": "Féminin", "M": "Masculin"}.get(str(p.get("sex")), str(p.get("sex") or "")),
        ins=str(p.get("ins") or ""),
        ins_kind=str(p.get("ins_kind") or ""),
        ins_qualified=bool(p.get("ins_qualified")),
        author=" — ".join(
            x for x in (author.get("name"), author.get("organisation")) if isinstance(x, str)
        ),
        effective_time=_fmt_date(info.get("effective_time")),
        narrative_html=narrative,
        problems=problems + tuple(info.get("verdict", {}).get("reasons", ())),
    )


def _documents_of(filename: str, ctype: str, data: bytes) -> list[DocumentView]:
    name = filename.lower()
    try:
        if data[:4] == b"PK\x03\x04" and (name.endswith(".zip") or "zip" in ctype):
            pkg = read_xdm(data)
            out = []
            for e in pkg.entries:
                if e.cda is not None:
                    out.append(
                        _document(describe_cda(e.cda), render_narrative(e.cda), tuple(pkg.problems))
                    )
            return out
        is_xml = name.endswith(".xml") or ctype in ("text/xml", "application/xml")
        if is_xml and b"ClinicalDocument" in data[:4096]:
            cda = read_cda(data)
            return [_document(describe_cda(cda), render_narrative(cda), ())]
    except (CaduceeError, ValueError, KeyError):
        return []
    return []


def _parts(msg: EmailMessage) -> list[EmailMessage]:
    """Leaf parts that are attachments (walk order), excluding the chosen body parts."""
    return [p for p in msg.walk() if not p.is_multipart() and _is_attachment(p)]


def _is_attachment(part: EmailMessage) -> bool:
    if part.get_content_disposition() == "attachment" or part.get_filename():
        return True
    return part.get_content_maintype() not in ("text", "multipart", "message")


def attachment_part(raw: bytes, index: int) -> tuple[str, str, bytes] | None:
    """(filename, content type, decoded bytes) of attachment ``index``."""
    parts = _parts(_parse(raw))
    if not 0 <= index < len(parts):
        return None
    p = parts[index]
    data = p.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = b""
    return p.get_filename() or f"piece-jointe-{index + 1}", p.get_content_type(), data


def parse_message(raw: bytes) -> MessageView:
    msg = _parse(raw)
    view = MessageView(
        subject=_decode(msg.get("Subject")) or "(sans objet)",
        sender=_decode(msg.get("From")),
        to=[
            f"{n} <{a}>" if n else a
            for n, a in getaddresses([str(x) for x in msg.get_all("To", [])])
        ],
        cc=[
            f"{n} <{a}>" if n else a
            for n, a in getaddresses([str(x) for x in msg.get_all("Cc", [])])
        ],
        date=_date(msg),
        message_id=_decode(msg.get("Message-ID")),
        mdn_to=_decode(msg.get("Disposition-Notification-To")) or None,
        patient_ins=_decode(msg.get("X-MSS-INS") or msg.get("X-Caducee-INS")),
        references=_decode(msg.get("References")),
    )
    body = msg.get_body(preferencelist=("plain", "html"))
    html_body = msg.get_body(preferencelist=("html",))
    if body is not None and body.get_content_type() == "text/plain":
        view.text = _content(body)
    elif html_body is not None:
        view.html, view.remote_blocked = sanitise_html(_content(html_body))
    for i, part in enumerate(_parts(msg)):
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        name = part.get_filename() or f"piece-jointe-{i + 1}"
        ctype = part.get_content_type()
        view.attachments.append(Attachment(i, name, ctype, len(data)))
        view.documents.extend(_documents_of(name, ctype, data))
    if msg.get_content_type() == "multipart/report":
        for part in msg.walk():
            if part.get_content_type() in (
                "message/delivery-status",
                "message/disposition-notification",
            ):
                payload = part.get_payload()
                text = "".join(str(p) for p in payload) if isinstance(payload, list) else payload
                view.text += "\n\n" + str(text)
    return view


def _content(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        data = part.get_payload(decode=True)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
