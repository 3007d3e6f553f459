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

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

import nh3

from caducee.core.errors import CaduceeError
from caducee.documents.cda import read_cda
from caducee.documents.inspect import describe_cda
from caducee.documents.mime import Leaf, leaves
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


_HEADERS = BytesHeaderParser(policy=compat32)


def _header(msg: Message, name: str) -> str:
    """An RFC 2047-decoded header on one line (the compat32 parser is ~10x cheaper than the
    ``default`` policy's header registry, which matters for a list of 50 rows)."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except (ValueError, LookupError, HeaderParseError):
        return " ".join(str(value).split())


def summarise(uid: int, flags: frozenset[str], size: int, head: bytes) -> MessageSummary:
    """A list row from the header block of a message."""
    msg = _HEADERS.parsebytes(head)
    ctype = str(msg.get("Content-Type", "")).lower()
    return MessageSummary(
        uid=uid,
        subject=_header(msg, "Subject") or "(sans objet)",
        sender=_short(_header(msg, "From")),
        recipients=", ".join(n or a for n, a in getaddresses([_header(msg, "To")]) if a),
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


def _is_attachment(leaf: Leaf) -> bool:
    disposition = str(leaf.headers.get("Content-Disposition", "")).lower()
    if disposition.startswith("attachment") or leaf.filename:
        return True
    return leaf.headers.get_content_maintype() not in ("text", "multipart", "message")


def _leaves(raw: bytes) -> tuple[Message, list[Leaf]]:
    """Top headers and leaf parts, with ``documents.mime``'s walker (Base64 decoded in C: the
    ``email`` feed parser takes ~100 ms on a message carrying a photo)."""
    headers, parts = leaves(raw)
    if not parts:
        body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else b""
        parts = [Leaf(headers, body)]
    return headers, parts


def _attachments(parts: list[Leaf]) -> list[Leaf]:
    """Leaf parts that are attachments (walk order: the same numbers for the download)."""
    return [p for p in parts if _is_attachment(p)]


def _name(leaf: Leaf, index: int) -> str:
    name = leaf.filename
    if name:
        with contextlib.suppress(ValueError, LookupError, HeaderParseError):
            name = str(make_header(decode_header(name)))
    return " ".join((name or f"piece-jointe-{index + 1}").split())[:200]


def attachment_part(raw: bytes, index: int) -> tuple[str, str, bytes] | None:
    """(filename, content type, decoded bytes) of attachment ``index``."""
    parts = _attachments(_leaves(raw)[1])
    if not 0 <= index < len(parts):
        return None
    p = parts[index]
    return _name(p, index), p.content_type, p.decoded()


def _text(leaf: Leaf) -> str:
    charset = leaf.headers.get_content_charset() or "utf-8"
    try:
        return leaf.decoded().decode(charset, "replace")
    except LookupError:
        return leaf.decoded().decode("utf-8", "replace")


def _addresses(msg: Message, name: str) -> list[str]:
    value = _header(msg, name)
    return [f"{n} <{a}>" if n else a for n, a in getaddresses([value]) if a]


def parse_message(raw: bytes) -> MessageView:
    msg, parts = _leaves(raw)
    view = MessageView(
        subject=_header(msg, "Subject") or "(sans objet)",
        sender=_header(msg, "From"),
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        date=_date(msg),
        message_id=_header(msg, "Message-ID"),
        mdn_to=_header(msg, "Disposition-Notification-To") or None,
        patient_ins=_header(msg, "X-MSS-INS") or _header(msg, "X-Caducee-INS"),
        references=_header(msg, "References"),
    )
    bodies = [p for p in parts if not _is_attachment(p)]
    plain = next((p for p in bodies if p.content_type == "text/plain"), None)
    html = next((p for p in bodies if p.content_type == "text/html"), None)
    if plain is not None:
        view.text = _text(plain)
    elif html is not None:
        view.html, view.remote_blocked = sanitise_html(_text(html))
    for i, part in enumerate(_attachments(parts)):
        name, ctype = _name(part, i), part.content_type
        cte = str(part.headers.get("Content-Transfer-Encoding", "")).strip().lower()
        if ctype.startswith("image/") and cte == "base64":
            size = len(part.raw_body.replace(b"\r", b"").replace(b"\n", b"")) * 3 // 4
            view.attachments.append(Attachment(i, name, ctype, size))
            continue  # a photo is not decoded to show the page
        data = part.decoded()
        view.attachments.append(Attachment(i, name, ctype, len(data)))
        view.documents.extend(_documents_of(name, ctype, data))
    for part in parts:
        if part.content_type in ("message/delivery-status", "message/disposition-notification"):
            view.text += "\n\n" + _text(part)
    return view
