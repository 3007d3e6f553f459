"""CDA narrative block (CDA R2 §4.3.5, ``NarrativeBlock.xsd``) rendered to safe HTML.

Allow-list rendering: known narrative elements map to a few HTML tags, every text is escaped,
no attribute is copied except ``colspan``/``rowspan`` (digits only). Links and multimedia are
shown as text, never as live references, so a received document cannot run script, load a
remote resource or track the reader.
"""

from __future__ import annotations

from html import escape
from typing import Any

from caducee.documents.cda import NS, CdaDocument

__all__ = ["render_narrative"]

_TAGS = {
    "paragraph": "p",
    "content": "span",
    "list": "ul",
    "item": "li",
    "table": "table",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "th": "th",
    "td": "td",
    "caption": "caption",
    "sub": "sub",
    "sup": "sup",
    "br": "br",
    "linkHtml": "span",
    "footnote": "small",
    "footnoteRef": "small",
    "col": "",
    "colgroup": "",
    "renderMultiMedia": "",
}


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1] if tag.startswith(f"{{{NS}}}") else ""


def _render(el: Any, out: list[str]) -> None:
    name = _local(el.tag)
    tag = _TAGS.get(name)
    if name == "list" and el.get("listType") == "ordered":
        tag = "ol"
    attrs = ""
    for span in ("colspan", "rowspan"):
        value = el.get(span)
        if value and value.isdigit():
            attrs += f' {span}="{value}"'
    if name == "br":
        out.append("<br>")
    elif name == "renderMultiMedia":
        out.append("<em>[multimedia]</em>")
    elif tag:
        out.append(f"<{tag}{attrs}>")
    if el.text and name not in ("br",):
        out.append(escape(el.text))
    for child in el:
        _render(child, out)
        if child.tail:
            out.append(escape(child.tail))
    if tag and name != "br":
        out.append(f"</{tag}>")


def render_narrative(doc: CdaDocument) -> str:
    """The document title and each section's title and narrative as one safe HTML fragment."""
    root = doc.tree
    out: list[str] = [f"<h1>{escape(doc.title or '')}</h1>"]
    if root is None:
        return out[0]
    for section in root.iter(f"{{{NS}}}section"):
        title = section.find(f"{{{NS}}}title")
        text = section.find(f"{{{NS}}}text")
        out.append("<section>")
        if title is not None:
            out.append(f"<h2>{escape(' '.join(''.join(title.itertext()).split()))}</h2>")
        if text is not None:
            out.append("<div>")
            if text.text:
                out.append(escape(text.text))
            for child in text:
                _render(child, out)
                if child.tail:
                    out.append(escape(child.tail))
            out.append("</div>")
        out.append("</section>")
    body = root.find(f"{{{NS}}}component/{{{NS}}}nonXMLBody/{{{NS}}}text")
    if body is not None:
        media = escape(body.get("mediaType") or "unknown type")
        out.append(f"<p><em>[non-XML body: {media}]</em></p>")
    return "".join(out)
