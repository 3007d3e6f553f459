"""The directory in the webmail: recipient autocomplete and the search page.

Both use the national directory's own search (``DirectoryStore.suggest`` /
``search_persons`` / ``search_orgs``: the same code as the FHIR API, docs/directory.md), so a
name typed in part, without accents or with one typo, finds the professional. Every user here is
an authenticated professional: phones and fax are shown (the FHIR API hides them from
anonymous callers). Liste rouge mailboxes are never returned by the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from caducee.directory.model import Organization, Person
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery
from caducee.web.context import WebContext

__all__ = ["DirEntry", "directory_page", "lookup", "suggest"]


@dataclass
class DirEntry:
    kind: str  # "person" | "org"
    name: str
    detail: list[str] = field(default_factory=list)  # profession, specialty
    places: list[str] = field(default_factory=list)  # structure, address
    phones: list[str] = field(default_factory=list)
    mailboxes: list[tuple[str, str]] = field(default_factory=list)  # (address, type)


def _org_place(o: Organization) -> str:
    street = " ".join(x for x in (o.num_voie, o.type_voie, o.voie) if x) or o.address_line
    town = " ".join(x for x in (o.postal_code, o.city) if x)
    return ", ".join(x for x in (o.name, street, town) if x)


def _person(p: Person, orgs: dict[str, Organization]) -> DirEntry:
    e = DirEntry("person", " ".join(x for x in (p.civ_ex_label, p.given, p.family) if x))
    for a in p.activities:
        for d in (a.profession_label, a.sf_label):
            if d and d not in e.detail:
                e.detail.append(d)
        o = orgs.get(a.org_key)
        if o is not None:
            place = _org_place(o)
            if place not in e.places:
                e.places.append(place)
            e.phones += [x for x in (o.phone, o.phone2) if x and x not in e.phones]
        e.mailboxes += [(m.address, m.type) for m in a.mailboxes]
    e.mailboxes = list(dict.fromkeys([(m.address, m.type) for m in p.mailboxes] + e.mailboxes))
    return e


def _org(o: Organization) -> DirEntry:
    e = DirEntry("org", o.name, [o.sector_label] if o.sector_label else [], [_org_place(o)])
    e.phones = [x for x in (o.phone, o.phone2) if x]
    e.mailboxes = [(m.address, m.type) for m in o.mailboxes]
    return e


def lookup(store: DirectoryStore, text: str, limit: int, place: str = "") -> list[DirEntry]:
    """Persons then structures matching ``text`` (names), optionally in ``place`` (a city, or a
    postal code / department number). Blocking: run it in a thread."""
    place = place.strip()
    postal, city = (place, "") if place[:2].isdigit() else ("", place)
    ids = store.search_persons(PersonQuery(text=text, postal_code=postal, city=city), 0, limit)
    persons = store.get_persons(ids)
    keys = {a.org_key for p in persons for a in p.activities if a.org_key}
    orgs = {o.key: o for o in store.get_orgs(sorted(keys))} if keys else {}
    out = [_person(p, orgs) for p in persons]
    if len(out) < limit:
        oq = OrgQuery(text=text, postal_code=postal, city=city)
        okeys = store.search_orgs(oq, 0, limit - len(out))
        out += [_org(o) for o in store.get_orgs(okeys)]
    return out


async def suggest(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    q = request.query_params.get("q", "").strip()[:100]
    if len(q) < 2 or ctx.directory is None:
        return JSONResponse({"results": []}, headers={"Cache-Control": "no-store"})
    found = await asyncio.to_thread(lookup, ctx.directory, q, 8)
    results = []
    for e in found:
        for address, mtype in e.mailboxes:
            results.append(
                {
                    "address": address,
                    "label": e.name,
                    "detail": " · ".join(
                        [*e.detail[:2], *(p.split(", ")[-1] for p in e.places[:1])]
                    ),
                    "type": mtype,
                }
            )
    await ctx.audit(session, "web.directory.suggest", "", results=str(len(results)))
    return JSONResponse({"results": results[:10]}, headers={"Cache-Control": "no-store"})


async def directory_page(ctx: WebContext, request: Request) -> Response:
    session = ctx.session_of(request)
    q = request.query_params.get("q", "").strip()[:100]
    place = request.query_params.get("lieu", "").strip()[:60]
    entries: list[DirEntry] = []
    if q and ctx.directory is not None:
        entries = await asyncio.to_thread(lookup, ctx.directory, q, 25, place)
        await ctx.audit(session, "web.directory.search", "", results=str(len(entries)))
    return ctx.render(
        request,
        "directory.html",
        {
            "q": q,
            "lieu": place,
            "entries": entries,
            "available": ctx.directory is not None,
            "boxes": await ctx.mailboxes(session),
            "current": session.current,
        },
        session=session,
    )
