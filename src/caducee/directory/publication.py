"""Mailbox publication by operators (ANS MSS FHIR API, notes §5.3, openapi-balmss.yaml).

A BAL is a ``telecom`` of Practitioner (PER, CAB), PractitionerRole (PER with a structure) or
Organization (ORG, APP). Operators send FHIR PATCH ``Parameters`` (``insert`` / ``replace`` /
``delete``, FHIRPath targets such as ``Practitioner.telecom.where(value = 'x@y.mssante.fr')``),
directly on a resource or conditionally on its business identifier (404 when nothing matches,
412 when several do). Address and type are immutable; ``rank`` 1 marks the preferred BAL;
liste rouge BALs are stored but never shown. An operator may only touch addresses of its own
domains. :func:`publish_mailbox` / :func:`unpublish_mailbox` are the same service for Python
callers (the operator core).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from caducee.core.errors import (
    AuthenticationFailed,
    CaduceeError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from caducee.directory import fhir
from caducee.directory.api import Authenticator, error_response, fhir_response, outcome
from caducee.directory.codes import SYS_FINESS, SYS_IDNPS, SYS_IDNST, SYS_RPPS, URL_MAILBOX_METADATA
from caducee.directory.model import MAILBOX_TYPES, Mailbox
from caducee.directory.store import DirectoryStore, OrgQuery, PersonQuery

__all__ = ["PatchHandler", "publish_mailbox", "unpublish_mailbox"]

_ADDRESS = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
_WHERE = re.compile(
    r"^(?P<kind>Practitioner|PractitionerRole|Organization)\.telecom"
    r"(?:\.where\(\s*value\s*=\s*'(?P<addr>[^']+)'\s*\))?"
    r"(?P<rest>.*)$"
)
_EXT = re.compile(r"^\.extension\('(?P<url>[^']+)'\)\.extension\('(?P<name>[A-Za-z]+)'\)\.value$")
_ALLOWED = {"Practitioner": ("PER", "CAB"), "PractitionerRole": ("PER",),
            "Organization": ("ORG", "APP")}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_domain(address: str, domains: Sequence[str] | None) -> None:
    if domains is None:
        return
    domain = address.rsplit("@", 1)[-1]
    if domain not in domains:
        raise PermissionDenied(f"domain {domain} is not one of this operator's domains")


def publish_mailbox(
    store: DirectoryStore, mailbox: Mailbox, *, operator_domains: Sequence[str] | None = None
) -> Mailbox:
    """Create or update a BAL. Address and type are immutable; ``rank=1`` makes it the holder's
    preferred BAL (any other rank-1 BAL of the same holder moves to rank 2)."""
    address = mailbox.address.strip().lower()
    if not _ADDRESS.match(address):
        raise InvalidInput(f"invalid mailbox address {mailbox.address!r}")
    if mailbox.type not in MAILBOX_TYPES:
        raise InvalidInput(f"mailbox type must be one of {', '.join(MAILBOX_TYPES)}")
    if mailbox.rank is not None and mailbox.rank < 1:
        raise InvalidInput("rank must be a positive integer")
    _check_domain(address, operator_domains)
    person_type = mailbox.type in ("PER", "CAB")
    if person_type and (not mailbox.idnps or not store.get_persons([mailbox.idnps])):
        raise NotFound(f"no practitioner {mailbox.idnps!r} for a {mailbox.type} mailbox")
    org_needed = mailbox.type in ("ORG", "APP") or bool(mailbox.org_key)
    if org_needed and (not mailbox.org_key or not store.get_orgs([mailbox.org_key])):
        raise NotFound(f"no organization {mailbox.org_key!r} for this mailbox")
    existing = store.find_mailbox(address)
    for old in existing:
        if old.type != mailbox.type:
            raise InvalidInput(f"the type of {address} is {old.type} and cannot change")
    new = replace(mailbox, address=address, source="op", updated=_now())
    if new.rank == 1:
        holder = [m for m in _holder_boxes(store, new) if m.address != address and m.rank == 1]
        for other in holder:
            store.put_mailbox(replace(other, rank=2, source="op", updated=new.updated))
    store.put_mailbox(new)
    return new


def _holder_boxes(store: DirectoryStore, m: Mailbox) -> list[Mailbox]:
    if m.type in ("ORG", "APP"):
        orgs = store.get_orgs([m.org_key])
        return list(orgs[0].mailboxes) if orgs else []
    persons = store.get_persons([m.idnps])
    return list(persons[0].mailboxes) if persons else []


def unpublish_mailbox(
    store: DirectoryStore, address: str, *, operator_domains: Sequence[str] | None = None
) -> bool:
    """Remove a BAL; False when it was not published."""
    address = address.strip().lower()
    _check_domain(address, operator_domains)
    return store.remove_mailbox(address) > 0


MAX_BODY = 256 * 1024  # a PATCH carries a few ContactPoints


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInput(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidInput(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class PatchHandler:
    """The FHIR PATCH endpoint (plain and conditional) for operators."""

    def __init__(self, store: DirectoryStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    async def patch(self, request: Request) -> Response:
        try:
            principal = await self.auth(request)
            if principal is None:
                raise AuthenticationFailed("a client certificate is required to publish")
            if principal.kind != "operator":
                raise PermissionDenied("only operators may publish mailboxes")
            raw = await _read_limited(request, MAX_BODY)
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise InvalidInput("the body is not JSON") from exc
            kind = request.path_params["kind"]
            rid = request.path_params.get("id")
            params = dict(request.query_params)
            res = await run_in_threadpool(self._apply, kind, rid, params, body, principal.domains)
        except AuthenticationFailed as exc:
            return outcome(401, "login", str(exc))
        except CaduceeError as exc:
            return error_response(exc)
        return fhir_response(res)

    def _resolve(self, kind: str, rid: str | None, params: dict[str, str]) -> tuple[str, str]:
        """(idnps, org_key) of the target resource."""
        s = self.store
        if rid is None:
            ident = params.get("identifier", "")
            system, _, value = ident.rpartition("|")
            if not value:
                raise InvalidInput("a conditional PATCH needs ?identifier=system|value")
            if kind == "Practitioner":
                idnps = "8" + value if system == SYS_RPPS else value
                if system not in (SYS_RPPS, SYS_IDNPS, ""):
                    raise InvalidInput(f"unsupported identifier system {system}")
                found = s.search_persons(PersonQuery(identifiers=(idnps,), fuzzy=False), 0, 2)
            elif kind == "Organization":
                if system not in (SYS_FINESS, SYS_IDNST, "http://finess.sante.gouv.fr", "")\
                        and not system.endswith("sirene.fr"):  # fmt: skip
                    raise InvalidInput(f"unsupported identifier system {system}")
                found = s.search_orgs(OrgQuery(identifiers=(value,)), 0, 2)
            else:
                found = [a.id for a in s.get_roles([value])]
            if not found:
                raise NotFound(f"no {kind} with identifier {ident}")
            if len(found) > 1:
                raise Conflict(f"several {kind} resources match {ident}")
            rid = found[0]
        if kind == "Practitioner":
            if not s.get_persons([rid]):
                raise NotFound(f"Practitioner/{rid} is not known")
            return rid, ""
        if kind == "Organization":
            if not s.get_orgs([rid]):
                raise NotFound(f"Organization/{rid} is not known")
            return "", rid
        if kind == "PractitionerRole":
            roles = s.get_roles([rid])
            if not roles:
                raise NotFound(f"PractitionerRole/{rid} is not known")
            return roles[0].idnps, roles[0].org_key
        raise NotFound(f"unknown resource type {kind}")

    def _apply(self, kind: str, rid: str | None, params: dict[str, str], body: Any,
               domains: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise InvalidInput("the body must be a FHIR Parameters resource")
        idnps, org_key = self._resolve(kind, rid, params)
        ops = [p for p in body.get("parameter", []) if p.get("name") == "operation"]
        if not ops:
            raise InvalidInput("no operation in the Parameters")
        for op in ops:
            self._operation(kind, idnps, org_key, op, domains)
        return self._resource(kind, idnps, org_key, rid, params)

    def _resource(self, kind: str, idnps: str, org_key: str, rid: str | None,
                  params: dict[str, str]) -> dict[str, Any]:  # fmt: skip
        if kind == "Practitioner":
            return fhir.practitioner(self.store.get_persons([idnps])[0], authenticated=True)
        if kind == "Organization":
            return fhir.organization(self.store.get_orgs([org_key])[0], authenticated=True)
        role_id = rid or params.get("identifier", "").rpartition("|")[2]
        return fhir.practitioner_role(self.store.get_roles([role_id])[0], authenticated=True)

    def _operation(self, kind: str, idnps: str, org_key: str, op: dict[str, Any],
                   domains: tuple[str, ...]) -> None:  # fmt: skip
        parts = {p.get("name"): p for p in op.get("part", [])}
        op_type = parts.get("type", {}).get("valueCode")
        path = parts.get("path", {}).get("valueString", "")
        m = _WHERE.match(path)
        if m is None or m.group("kind") != kind:
            raise InvalidInput(f"unsupported path {path!r}")
        addr, rest = (m.group("addr") or "").lower(), m.group("rest")
        value = parts.get("value", {})
        if op_type == "insert":
            if addr or rest:
                raise InvalidInput("insert targets <Resource>.telecom")
            new = self._contact_point(value.get("valueContactPoint"), kind, idnps, org_key)
            if self.store.find_mailbox(new.address):
                raise InvalidInput(f"{new.address} is already published")
            publish_mailbox(self.store, new, operator_domains=domains)
            return
        if not addr:
            raise InvalidInput(f"{op_type} needs telecom.where(value = '<address>')")
        current = [b for b in self.store.find_mailbox(addr)
                   if b.idnps == idnps and (not org_key or b.org_key == org_key or kind == "Practitioner")]  # noqa: E501  # fmt: skip
        if not current:
            raise NotFound(f"{addr} is not a mailbox of this {kind}")
        _check_domain(addr, domains)
        old = current[0]
        if op_type == "delete":
            if rest:
                raise InvalidInput("delete targets a whole telecom")
            unpublish_mailbox(self.store, addr, operator_domains=domains)
            return
        if op_type != "replace":
            raise InvalidInput(f"unsupported operation type {op_type!r}")
        if not rest:
            new = self._contact_point(value.get("valueContactPoint"), kind, idnps, org_key)
            if new.address != addr:
                raise InvalidInput("the address of a mailbox is immutable")
            if new.type != old.type:
                raise InvalidInput("the type of a mailbox is immutable")
            publish_mailbox(self.store, new, operator_domains=domains)
            return
        if rest == ".rank":
            rank = value.get("valueInteger", value.get("valuePositiveInt"))
            if not isinstance(rank, int) or rank < 1:
                raise InvalidInput("rank must be a positive integer")
            publish_mailbox(self.store, replace(old, rank=rank), operator_domains=domains)
            return
        if rest == ".value":
            raise InvalidInput("the address of a mailbox is immutable")
        ext = _EXT.match(rest)
        if ext is None or ext.group("url") != URL_MAILBOX_METADATA:
            raise InvalidInput(f"unsupported path {path!r}")
        name = ext.group("name")
        if name == "type":
            raise InvalidInput("the type of a mailbox is immutable")
        if name == "listeRouge":
            flag = value.get("valueBoolean")
            if not isinstance(flag, bool):
                raise InvalidInput("listeRouge takes valueBoolean")
            publish_mailbox(self.store, replace(old, liste_rouge=flag), operator_domains=domains)
            return
        if name in ("description", "service", "responsible"):
            text = value.get("valueString")
            if not isinstance(text, str):
                raise InvalidInput(f"{name} takes valueString")
            if name == "description":
                new = replace(old, description=text)
            elif name == "service":
                new = replace(old, service=text)
            else:
                new = replace(old, responsible=text)
            publish_mailbox(self.store, new, operator_domains=domains)
            return
        if name == "digitization":
            demat = "O" if value.get("valueBoolean") else "N"
            publish_mailbox(self.store, replace(old, demat=demat), operator_domains=domains)
            return
        raise InvalidInput(f"unsupported mailbox attribute {name!r}")

    @staticmethod
    def _contact_point(cp: Any, kind: str, idnps: str, org_key: str) -> Mailbox:
        if not isinstance(cp, dict) or cp.get("system") != "email" or not cp.get("value"):
            raise InvalidInput("value must be a valueContactPoint with system email")
        meta: dict[str, Any] = {}
        for ext in cp.get("extension", []):
            if ext.get("url") == URL_MAILBOX_METADATA:
                for sub in ext.get("extension", []):
                    vals = [v for k, v in sub.items() if k.startswith("value")]
                    meta[str(sub.get("url"))] = vals[0] if vals else None
        type_cc = meta.get("type") or {}
        codes = (
            [c.get("code") for c in type_cc.get("coding", [])] if isinstance(type_cc, dict) else []
        )
        mtype = next((c for c in codes if c in MAILBOX_TYPES), None)
        if mtype is None:
            raise InvalidInput("the mailbox metadata must give its type (PER, ORG, APP or CAB)")
        if mtype not in _ALLOWED[kind]:
            raise InvalidInput(f"a {mtype} mailbox cannot be published on {kind}")
        rank = cp.get("rank")
        return Mailbox(
            address=str(cp["value"]).strip().lower(),
            type=mtype,
            idnps=idnps,
            org_key=org_key if kind != "Practitioner" else "",
            service=str(meta.get("service") or ""),
            description=str(meta.get("description") or ""),
            responsible=str(meta.get("responsible") or ""),
            liste_rouge=bool(meta.get("listeRouge", False)),
            rank=rank if isinstance(rank, int) else None,
            demat="O" if meta.get("digitization") else "",
        )
