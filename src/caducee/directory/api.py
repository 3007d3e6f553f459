"""FHIR R4 REST API of the directory, compatible with the Annuaire Santé FHIR API v2 (notes §6.4).

Read and search on Practitioner, PractitionerRole and Organization (GET and POST ``_search``),
``_include`` / ``_revinclude``, searchset bundles of 50 with ``next`` links, ``/metadata``, and
OperationOutcome on every error. Operators publish mailboxes with FHIR PATCH (notes §5.3), see
:mod:`caducee.directory.publication`.

GET searches and reads, the hot path, are answered by :class:`FastPath` in front of Starlette
(no routing, middleware or Request/Response objects: the query string is parsed as Starlette
parses it and the bytes are sent as they are). On SQLite the storage calls run on the event
loop thread (short local reads: a hop to the thread pool cost more than most searches); a
database server is asked from the thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from caducee.core.errors import CaduceeError, Conflict, InvalidInput, NotFound, PermissionDenied
from caducee.directory import fhir
from caducee.directory.params import parse_org, parse_person, parse_role
from caducee.directory.render import Rendered, ResourceCache, ResultCache, dumps
from caducee.directory.store import DirectoryStore

__all__ = ["FHIR_JSON", "FastPath", "Principal", "build_app"]

FHIR_JSON = "application/fhir+json"
KINDS = ("Practitioner", "Organization", "PractitionerRole")
MAX_COUNT = 200
DEFAULT_COUNT = 50


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: an authenticated professional (sees contact details) or an operator (may
    publish mailboxes of its ``domains``)."""

    name: str
    kind: str = "professional"  # or "operator"
    domains: tuple[str, ...] = field(default=())


Authenticator = Callable[[Request], Awaitable[Principal | None]]


async def anonymous(_request: Request) -> Principal | None:
    return None


def fhir_response(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type=FHIR_JSON)


def outcome(status: int, code: str, message: str) -> Response:
    return fhir_response(fhir.operation_outcome(code, message), status)


def error_response(exc: CaduceeError) -> Response:
    """The one place mapping the error tree to HTTP status + OperationOutcome."""
    if isinstance(exc, NotFound):
        return outcome(404, "not-found", str(exc))
    if isinstance(exc, Conflict):
        return outcome(412, "multiple-matches", str(exc))
    if isinstance(exc, PermissionDenied):
        return outcome(403, "forbidden", str(exc))
    if isinstance(exc, InvalidInput):
        return outcome(400, "invalid", str(exc))
    return outcome(500, "exception", "internal error")


def _full_url(prefix: dict[str, bytes], base: str, kind: str, rid: str) -> bytes:
    """``dumps(f"{base}/{kind}/{rid}")``; ``prefix`` keeps the encoded ``"{base}/{kind}/`` of
    each type, to which a plain ASCII id is added as it is (JSON escapes nothing in it)."""
    if rid.isalnum() and rid.isascii():
        head = prefix.get(kind)
        if head is None:
            head = prefix[kind] = dumps(f"{base}/{kind}/")[:-1]
        return head + rid.encode() + b'"'
    return dumps(f"{base}/{kind}/{rid}")


class DirectoryApi:
    """Request handlers; ``store`` does the work, ``auth`` says who calls."""

    def __init__(self, store: DirectoryStore, auth: Authenticator, base_url: str = "") -> None:
        self.store = store
        self.auth = auth
        self.base_url = base_url.rstrip("/")
        self.cache = ResourceCache(store)
        self.results = ResultCache()
        # A local SQLite file answers the generation lookup in microseconds: do it on the event
        # loop; a database server is asked from the thread pool.
        self._cheap_generation = getattr(store, "engine", "") == "sqlite"

    async def generation(self) -> int:
        gen: int = await self.run(self.store.generation)
        return gen

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the loop thread for SQLite, else in the thread pool."""
        if self._cheap_generation:
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    def base(self, request: Request) -> str:
        return self.base_url or str(request.base_url).rstrip("/")

    async def params(self, request: Request) -> MultiDict:
        if request.method == "POST":
            form = await request.form()
            items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            return MultiDict([*request.query_params.multi_items(), *items])
        return MultiDict(request.query_params.multi_items())

    async def search(self, request: Request) -> Response:
        try:
            principal = await self.auth(request)
            params = await self.params(request)
            body = await self.answer(
                request.path_params["kind"], params, principal is not None, self.base(request)
            )
        except CaduceeError as exc:
            return error_response(exc)
        return Response(body, media_type=FHIR_JSON)

    async def answer(self, kind: str, params: MultiDict, authed: bool, base: str) -> bytes:
        """The searchset bundle: from the answer cache, or searched and put there."""
        key = (kind, tuple(params.multi_items()), authed, base)
        gen = await self.generation()
        body = self.results.get(key, gen)
        if body is None:
            body = await self.run(self._search, kind, params, authed, base, gen)
            self.results.put(key, gen, body)
        return body

    def _search(
        self, kind: str, params: MultiDict, authed: bool, base: str, gen: int | None = None
    ) -> bytes:
        try:
            count = min(int(params.get("_count", DEFAULT_COUNT)), MAX_COUNT)
            offset = max(int(params.get("_offset", 0)), 0)
        except ValueError as exc:
            raise InvalidInput("_count and _offset must be integers") from exc
        if count < 0:
            raise InvalidInput("_count must not be negative")
        s = self.store
        self.cache.refresh(gen)
        if kind == "Practitioner":
            pq = parse_person(params)
            ids = [] if pq is None else s.search_persons(pq, offset, count + 1)
        elif kind == "Organization":
            oq = parse_org(params)
            ids = [] if oq is None else s.search_orgs(oq, offset, count + 1)
        elif kind == "PractitionerRole":
            rq = parse_role(params)
            ids = [] if rq is None else s.search_roles(rq, offset, count + 1)
        else:
            raise NotFound(f"unknown resource type {kind}")
        matches = [(kind, i, r) for i, r in self.cache.get(kind, ids[:count], authed)]
        included = self._includes(kind, params, matches, authed)
        more = len(ids) > count
        return self._bundle(kind, base, params, matches, included, offset, count, more)

    def _includes(self, kind: str, params: MultiDict, matches: list[tuple[str, str, Rendered]],
                  authed: bool) -> list[tuple[str, str, Rendered]]:  # fmt: skip
        inc = set(params.getlist("_include"))
        rev = set(params.getlist("_revinclude"))
        out: list[tuple[str, str, Rendered]] = []
        s = self.store
        if kind == "PractitionerRole":
            wanted = set()
            if inc & {"PractitionerRole:practitioner", "*", "PractitionerRole:*"}:
                wanted.add("Practitioner")
            if inc & {"PractitionerRole:organization", "*", "PractitionerRole:*"}:
                wanted.add("Organization")
            for target in sorted(wanted):
                refs = dict.fromkeys(
                    ref.split("/", 1)[1]
                    for _k, _i, (_b, rs) in matches
                    for ref in rs
                    if ref.startswith(target + "/")
                )
                out += [(target, i, r) for i, r in self.cache.get(target, list(refs), authed)]
        elif kind == "Practitioner" and rev & {"PractitionerRole:practitioner", "*"}:
            roles = s.roles_of(practitioners=[i for _k, i, _r in matches])
            out += [
                ("PractitionerRole", i, r)
                for i, r in self.cache.get("PractitionerRole", roles, authed)
            ]
        elif kind == "Organization" and rev & {"PractitionerRole:organization", "*"}:
            roles = s.roles_of(orgs=[i for _k, i, _r in matches])
            out += [
                ("PractitionerRole", i, r)
                for i, r in self.cache.get("PractitionerRole", roles, authed)
            ]
        return out

    def _bundle(self, kind: str, base: str, params: MultiDict,
                matches: list[tuple[str, str, Rendered]],
                included: list[tuple[str, str, Rendered]], offset: int, count: int,
                more: bool) -> bytes:  # fmt: skip
        plain = urlencode([(k, v) for k, v in params.multi_items() if k != "_offset"])
        # urlencode([*plain, ("_offset", n)]), the query without _offset encoded once
        head = f"{base}/{kind}?{plain}&_offset=" if plain else f"{base}/{kind}?_offset="
        links = [{"relation": "self", "url": f"{head}{offset}"}]
        if more:
            links.append({"relation": "next", "url": f"{head}{offset + count}"})
        if offset > 0:
            links.append({"relation": "previous", "url": f"{head}{max(offset - count, 0)}"})
        parts = [b'{"resourceType":"Bundle","type":"searchset","link":', dumps(links)]
        if not more:
            parts += [b',"total":', str(offset + len(matches)).encode()]
        prefix: dict[str, bytes] = {}
        entries = [
            b'{"fullUrl":' + _full_url(prefix, base, k, i) + b',"resource":' + body
            + b',"search":{"mode":"' + mode + b'"}}'
            for mode, group in ((b"match", matches), (b"include", included))
            for k, i, (body, _refs) in group
        ]  # fmt: skip
        if entries:
            parts += [b',"entry":[', b",".join(entries), b"]"]
        parts.append(b"}")
        return b"".join(parts)

    async def read(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        rid = request.path_params["id"]
        try:
            principal = await self.auth(request)
            body = await self.run(self._read, kind, rid, principal is not None)
        except CaduceeError as exc:
            return error_response(exc)
        return Response(body, media_type=FHIR_JSON)

    def _read(self, kind: str, rid: str, authed: bool) -> bytes:
        if kind not in ("Practitioner", "Organization", "PractitionerRole"):
            raise NotFound(f"unknown resource type {kind}")
        self.cache.refresh()
        found = self.cache.get(kind, [rid], authed)
        if not found:
            raise NotFound(f"{kind}/{rid} is not known")
        return found[0][1][0]

    async def autocomplete(self, request: Request) -> Response:
        """``GET /autocomplete?q=jean dup&limit=10``: names as you type (not a FHIR
        interaction; each result points to the FHIR resource)."""
        text = request.query_params.get("q", "").strip()
        try:
            limit = min(max(int(request.query_params.get("limit", "10")), 1), 50)
        except ValueError:
            return outcome(400, "invalid", "limit must be an integer")
        found = await self.run(self.store.suggest, text, limit) if text else []
        items = [{"resourceType": k, "id": i, "label": label} for k, i, label in found]
        return Response(dumps({"results": items}), media_type="application/json")

    async def metadata(self, request: Request) -> Response:
        from caducee.directory.capability import capability_statement

        return fhir_response(capability_statement(self.base(request)))


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class FastPath:
    """ASGI front of the app: ``GET /<type>?...`` and ``GET /<type>/<id>`` answered directly,
    everything else passed to ``app`` (Starlette)."""

    def __init__(self, api: DirectoryApi, app: ASGIApp) -> None:
        self.api = api
        self.app = app
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        kind, _, rid = scope["path"][1:].partition("/")
        if kind not in KINDS or "/" in rid:
            await self.app(scope, receive, send)
            return
        api = self.api
        request = Request(scope)
        try:
            authed = await api.auth(request) is not None
            if rid:
                body = await api.run(api._read, kind, rid, authed)
            else:
                query = scope["query_string"].decode("latin-1")
                params = MultiDict(parse_qsl(query, keep_blank_values=True))
                body = await api.answer(kind, params, authed, api.base(request))
        except CaduceeError as exc:
            await error_response(exc)(scope, receive, send)
            return
        headers = [(b"content-type", FHIR_JSON.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def build_app(
    store: DirectoryStore,
    *,
    auth: Authenticator = anonymous,
    base_url: str = "",
    publisher: Any = None,
) -> FastPath:
    """The ASGI app (:class:`FastPath` in front of Starlette). ``publisher`` (a
    :class:`caducee.directory.publication.PatchHandler`) adds the PATCH routes for
    operators."""
    api = DirectoryApi(store, auth, base_url)
    kinds = "{kind:str}"
    routes = [
        Route("/metadata", api.metadata, methods=["GET"]),
        Route("/autocomplete", api.autocomplete, methods=["GET"]),
        Route(f"/{kinds}/_search", api.search, methods=["POST"]),
        Route(f"/{kinds}/{{id:str}}", api.read, methods=["GET"]),
        Route(f"/{kinds}", api.search, methods=["GET"]),
    ]
    if publisher is not None:
        routes.insert(1, Route(f"/{kinds}/{{id:str}}", publisher.patch, methods=["PATCH"]))
        routes.insert(1, Route(f"/{kinds}", publisher.patch, methods=["PATCH"]))
    app = Starlette(routes=routes)
    app.state.api = api
    return FastPath(api, app)
