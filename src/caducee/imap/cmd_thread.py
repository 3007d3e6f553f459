"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §2.2 and §3).

REFERENCES follows the steps of RFC 5256 §2.2 (after Zawinski's algorithm): link the
References (or In-Reply-To) chains without creating loops, prune the empty containers,
sort by sent date, then merge root threads that share a base subject."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from caducee.imap.cmd_fetch import _reply, load_message, matching, selected
from caducee.imap.cmd_sort import base_subject, sent_date
from caducee.imap.commands import ThreadArgs
from caducee.imap.matcher import decode_header_value

if TYPE_CHECKING:
    from caducee.core.model import StoredMessage
    from caducee.imap.commands import Command
    from caducee.imap.mime import Part
    from caducee.imap.session import Session

__all__ = ["thread"]

_MSGID = re.compile(rb"<[^<>\s]+>")
_REPLY = re.compile(r"^\s*(?:\[[^\]]*\]\s*)*(?:re|fwd?)\s*(?:\[[^\]]*\]\s*)?:", re.IGNORECASE)


@dataclass(eq=False)
class _Node:
    num: int = 0  # the message number (or UID) answered; 0 for an empty container
    seq: int = 0
    date: datetime | None = None
    subject: str = ""
    reply: bool = False  # the subject was a reply or forward ("Re:", "Fwd:")
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def ancestors(self) -> set[int]:
        out: set[int] = set()
        node: _Node | None = self
        while node is not None:
            out.add(id(node))
            node = node.parent
        return out

    def adopt(self, child: _Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def sort_key(self) -> tuple[datetime, int]:
        if self.num or not self.children:
            return (self.date or datetime.min.replace(tzinfo=UTC), self.seq)
        return self.children[0].sort_key()


@dataclass
class _Msg:
    num: int
    seq: int
    date: datetime
    subject: str
    reply: bool
    message_id: bytes | None
    refs: list[bytes]


def _info(num: int, seq: int, msg: StoredMessage, root: Part) -> _Msg:
    date = sent_date(root, msg)
    raw_subject = root.header("subject")
    subject = decode_header_value(raw_subject) if raw_subject is not None else ""
    mid = _MSGID.search(root.header("message-id") or b"")
    refs = _MSGID.findall(root.header("references") or b"")
    if not refs:
        refs = _MSGID.findall(root.header("in-reply-to") or b"")[:1]
    return _Msg(
        num,
        seq,
        date,
        base_subject(subject).upper(),
        bool(_REPLY.match(subject)),
        mid.group(0) if mid else None,
        refs,
    )


def _fill(node: _Node, m: _Msg) -> None:
    node.num, node.seq, node.date, node.subject, node.reply = (
        m.num, m.seq, m.date, m.subject, m.reply
    )  # fmt: skip


def _references(msgs: list[_Msg]) -> list[_Node]:
    table: dict[bytes, _Node] = {}
    every: list[_Node] = []

    def container(mid: bytes) -> _Node:
        if mid not in table:
            table[mid] = _Node()
            every.append(table[mid])
        return table[mid]

    for m in msgs:
        node = table.get(m.message_id) if m.message_id else None
        if node is None or node.num:  # missing or duplicate Message-ID: a container of its own
            node = _Node()
            every.append(node)
            if m.message_id and m.message_id not in table:
                table[m.message_id] = node
        _fill(node, m)
        # (1A) link the References chain, parent before child, never making a loop
        prev: _Node | None = None
        for ref in m.refs:
            cur = container(ref)
            if prev is not None and cur.parent is None and id(cur) not in prev.ancestors():
                prev.adopt(cur)
            prev = cur
        # (1B) the message is a child of its last reference (replacing any parent)
        if prev is not None and prev is not node and id(node) not in prev.ancestors():
            prev.adopt(node)
        elif prev is None and node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
    roots = [n for n in every if n.parent is None]
    roots = _prune(roots, top=True)
    _sort(roots)
    return _merge_subjects(roots)


def _prune(nodes: list[_Node], *, top: bool) -> list[_Node]:
    """(4) empty containers: dropped when childless, replaced by their children unless at the
    root with more than one child."""
    out: list[_Node] = []
    for n in nodes:
        n.children = _prune(n.children, top=False)
        for c in n.children:
            c.parent = n
        if n.num:
            out.append(n)
        elif not n.children:
            continue
        elif top and len(n.children) > 1:
            out.append(n)
        else:
            for c in n.children:
                c.parent = n.parent
            out.extend(n.children)
    return out


def _sort(nodes: list[_Node]) -> None:
    for n in nodes:
        _sort(n.children)
    nodes.sort(key=_Node.sort_key)


def _subject_of(n: _Node) -> tuple[str, bool]:
    if n.num or not n.children:
        return n.subject, n.reply
    return n.children[0].subject, n.children[0].reply


def _merge_subjects(roots: list[_Node]) -> list[_Node]:
    """(5) root threads with the same base subject are gathered (RFC 5256 §2.2 step 5)."""
    table: dict[str, _Node] = {}
    for r in roots:
        subj, reply = _subject_of(r)
        if not subj:
            continue
        old = table.get(subj)
        if (
            old is None
            or (not r.num and old.num)
            or (old.num and r.num and _subject_of(old)[1] and not reply)
        ):
            table[subj] = r
    out: list[_Node] = []
    for r in roots:
        subj, reply = _subject_of(r)
        keep = table.get(subj) if subj else None
        if keep is None or keep is r:
            out.append(r)
            continue
        if not keep.num and not r.num:
            for c in list(r.children):
                keep.adopt(c)
        elif not keep.num:
            keep.adopt(r)
        elif not r.num:
            r.adopt(keep)
            table[subj] = r
            out = [r if x is keep else x for x in out]
        elif _subject_of(keep)[1] == reply:
            box = _Node()
            idx = out.index(keep) if keep in out else len(out)
            box.adopt(keep)
            box.adopt(r)
            table[subj] = box
            if keep in out:
                out[idx] = box
            else:
                out.append(box)
        elif reply:
            keep.adopt(r)
        else:
            r.adopt(keep)
            table[subj] = r
            out = [r if x is keep else x for x in out]
    _sort(out)
    return out


def _ordered_subject(msgs: list[_Msg]) -> list[_Node]:
    groups: dict[str, list[_Msg]] = {}
    for m in sorted(msgs, key=lambda m: (m.subject, m.date, m.seq)):
        groups.setdefault(m.subject, []).append(m)
    roots: list[_Node] = []
    for members in groups.values():
        head = _Node()
        _fill(head, members[0])
        for m in members[1:]:
            child = _Node()
            _fill(child, m)
            head.adopt(child)
        roots.append(head)
    roots.sort(key=_Node.sort_key)
    return roots


def _render(n: _Node) -> bytes:
    """A thread: a chain while each node has one child, then each child in parentheses."""
    parts: list[bytes] = []
    node = n
    while True:
        if node.num:
            parts.append(b"%d" % node.num)
        if len(node.children) == 1:
            node = node.children[0]
            continue
        kids = b"".join(b"(" + _render(c) + b")" for c in node.children)
        if kids:
            parts.append(kids)
        return b" ".join(parts)


async def thread(s: Session, cmd: Command) -> bytes:
    args = cmd.args
    if not isinstance(args, ThreadArgs):
        raise _reply("BAD", "", "invalid arguments")
    view = selected(s)
    msgs: list[_Msg] = []
    for seq, uid, msg in await matching(s, view, args.search.key):
        root = (await load_message(s, msg))[1]
        msgs.append(_info(uid if cmd.uid else seq, seq, msg, root))
    roots = _references(msgs) if args.algorithm == "REFERENCES" else _ordered_subject(msgs)
    # thread-data = "THREAD" [SP 1*thread-list]
    s.untagged(
        b"THREAD" + (b" " if roots else b"") + b"".join(b"(" + _render(r) + b")" for r in roots)
    )
    return b"OK " + (b"UID THREAD" if cmd.uid else b"THREAD") + b" completed"
