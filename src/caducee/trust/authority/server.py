"""``caducee authority serve``: publishes the list over HTTPS, CRLs and OCSP over HTTP.

HTTPS (``--https``): ``/listeblanchemssante.xml``, ``/checksum``, ``/listeblanchemssante.xml.p7s``,
``/ca-bundle.pem``. HTTP (``--http``, like IGC-Santé's CRL/OCSP distribution points): the same
files plus ``/crl/aci.crl``, ``/crl/acr.crl`` and the OCSP responder (RFC 6960 Appendix A:
``POST /ocsp`` with ``application/ocsp-request``, or ``GET /ocsp/<base64>``). CRLs and the list are
re-published every ``republish_seconds`` so CRLs never reach their ``nextUpdate``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import signal
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from caducee.trust.authority.ca import LIST_NAME, Authority

__all__ = ["build_app", "serve_authority"]

log = logging.getLogger(__name__)

_TYPES = {
    LIST_NAME: "application/xml",
    "checksum": "text/plain; charset=utf-8",
    f"{LIST_NAME}.p7s": "application/pkcs7-signature",
    "ca-bundle.pem": "application/x-pem-file",
    "aci.crl": "application/pkix-crl",
    "acr.crl": "application/pkix-crl",
}


def build_app(auth: Authority, *, with_ocsp: bool) -> Starlette:
    public = auth.directory / "public"

    def file_route(path: str, name: str) -> Route:
        async def handler(_: Request) -> Response:
            data = await asyncio.to_thread((public / name).read_bytes)
            return Response(data, media_type=_TYPES[name])

        return Route(path, handler, methods=["GET", "HEAD"])

    routes = [
        file_route(f"/{LIST_NAME}", LIST_NAME),
        file_route("/checksum", "checksum"),
        file_route(f"/{LIST_NAME}.p7s", f"{LIST_NAME}.p7s"),
        file_route("/ca-bundle.pem", "ca-bundle.pem"),
    ]
    if with_ocsp:

        async def ocsp_post(request: Request) -> Response:
            body = await request.body()
            if len(body) > 16384:
                return Response(status_code=413)
            return Response(auth.ocsp_response(body), media_type="application/ocsp-response")

        async def ocsp_get(request: Request) -> Response:
            try:
                der = base64.b64decode(request.path_params["req"], validate=False)
            except (binascii.Error, ValueError):
                der = b""
            return Response(auth.ocsp_response(der), media_type="application/ocsp-response")

        routes += [
            file_route("/crl/aci.crl", "aci.crl"),
            file_route("/crl/acr.crl", "acr.crl"),
            Route("/ocsp", ocsp_post, methods=["POST"]),
            Route("/ocsp/{req:path}", ocsp_get, methods=["GET"]),
        ]
    return Starlette(routes=routes)


def _stop_all(servers: dict[str, uvicorn.Server]) -> None:
    for server in servers.values():
        server.should_exit = True


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve_authority(
    auth: Authority,
    passphrase: bytes,
    *,
    https_listen: str | None = "127.0.0.1:8443",
    http_listen: str | None = "127.0.0.1:8080",
    republish_seconds: float = 3600.0,
    on_ready: Callable[[dict[str, tuple[str, int]]], None] | None = None,
    handle_signals: bool = False,
) -> None:
    """Serves until cancelled; ``on_ready`` gets the bound addresses by name (https, http)."""
    servers: dict[str, uvicorn.Server] = {}
    ca_dir = auth.directory / "ca"
    if https_listen:
        host, port = _split(https_listen)
        cfg = uvicorn.Config(
            build_app(auth, with_ocsp=False),
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(ca_dir / "https.chain.pem"),
            ssl_keyfile=str(ca_dir / "private" / "https.key.enc.pem"),
            ssl_keyfile_password=passphrase.decode(),
            lifespan="off",
        )
        servers["https"] = uvicorn.Server(cfg)
    if http_listen:
        host, port = _split(http_listen)
        cfg = uvicorn.Config(
            build_app(auth, with_ocsp=True),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
        servers["http"] = uvicorn.Server(cfg)
    server_tasks = [asyncio.create_task(s.serve()) for s in servers.values()]

    async def republish() -> None:
        while True:
            await asyncio.sleep(republish_seconds)
            try:
                await asyncio.to_thread(auth.publish)
            except Exception:
                log.exception("authority: re-publication failed")

    republisher = asyncio.create_task(republish())
    try:
        while not all(s.started for s in servers.values()):
            failed = [t for t in server_tasks if t.done()]
            if failed:
                failed[0].result()  # re-raises the bind error
                raise OSError("authority: a listener stopped while starting")
            await asyncio.sleep(0.01)
        if handle_signals:
            # uvicorn's own handlers stop only the last server started: stop them all
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, _stop_all, servers)
        bound = {name: s.servers[0].sockets[0].getsockname()[:2] for name, s in servers.items()}
        if on_ready is not None:
            on_ready(bound)
        # asyncio.wait (not gather): a cancellation must not cancel the listeners before
        # they shut down gracefully in the finally block below.
        done, _ = await asyncio.wait(server_tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        republisher.cancel()
        for s in servers.values():
            s.should_exit = True  # graceful: listeners close their sockets
        await asyncio.wait(server_tasks, timeout=10)
        for t in server_tasks:
            t.cancel()
        await asyncio.gather(republisher, *server_tasks, return_exceptions=True)
