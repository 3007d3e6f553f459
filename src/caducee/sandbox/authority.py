"""The trust authority of the sandbox (issue 4 §4): created by ``sandbox init``, served by
``sandbox run``.

The sandbox CA *is* the authority's CA: ``sandbox init`` runs :meth:`Authority.init` in
``D/authority`` (keys encrypted at rest with a random passphrase kept in
``D/authority/passphrase``, mode 0600 — a sandbox only), registers every operator through it
(``add_operator`` then certificates issued from CSRs), and publishes the signed liste blanche,
its checksum and the CRLs. ``sandbox run`` serves them (HTTPS: list, checksum, signature; HTTP:
CRLs and the OCSP responder, RFC 6960) on fixed offsets from the port base, and re-publishes on
schedule. Each operator's node configuration points its trust refresh at those URLs, so
``caducee authority operator revoke --dir D/authority --passphrase-file D/authority/passphrase``
delists and revokes an operator and the others refuse it within one refresh period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from caducee.trust.authority import LIST_NAME, Authority, CertKind, new_key_and_csr

__all__ = [
    "AUTHORITY_HTTPS_OFFSET",
    "AUTHORITY_HTTP_OFFSET",
    "AuthorityThread",
    "LiveAuthority",
    "authority_urls",
    "issue_for",
    "open_sandbox_authority",
    "revoke_certificate",
    "url_host",
]

log = logging.getLogger(__name__)

AUTHORITY_HTTPS_OFFSET = 900  # port base + 900: list, checksum, signature (HTTPS)
AUTHORITY_HTTP_OFFSET = 901  # port base + 901: CRLs and OCSP (HTTP, like IGC-Santé)
PASSPHRASE_FILE = "passphrase"  # noqa: S105  # a file name, not a secret


def url_host(host: str) -> str:
    """The name to put in URLs: the authority's HTTPS certificate names ``localhost``."""
    return "localhost" if host in ("127.0.0.1", "localhost", "::1") else host


def authority_urls(host: str, port_base: int) -> dict[str, str]:
    """The ``authority`` object of sandbox.json."""
    name = url_host(host)
    https = f"https://{name}:{port_base + AUTHORITY_HTTPS_OFFSET}"
    http = f"http://{host}:{port_base + AUTHORITY_HTTP_OFFSET}"
    return {
        "list_url": f"{https}/{LIST_NAME}",
        "checksum_url": f"{https}/checksum",
        "signature_url": f"{https}/{LIST_NAME}.p7s",
        "ca_bundle_url": f"{https}/ca-bundle.pem",
        "crl_url": f"{http}/crl/aci.crl",
        "arl_url": f"{http}/crl/acr.crl",
        "ocsp_url": f"{http}/ocsp",
        "https": f"{host}:{port_base + AUTHORITY_HTTPS_OFFSET}",
        "http": f"{host}:{port_base + AUTHORITY_HTTP_OFFSET}",
    }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def issue_for(
    auth: Authority, operator: str, cn: str, kind: CertKind, directory: Path, stem: str
) -> tuple[x509.Certificate, Path, Path]:
    """Onboarding as a real operator does it: a key and a CSR, the certificate issued by the
    authority; writes ``stem.chain.pem`` (leaf + intermediate) and ``stem.key.pem`` (0600)."""
    key, csr = new_key_and_csr(cn)
    cert = auth.issue_from_csr(operator, csr, kind, author="sandbox init")
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    chain = directory / f"{stem}.chain.pem"
    chain.write_bytes(cert.public_bytes(pem) + auth.intermediate.cert.public_bytes(pem))
    key_path = directory / f"{stem}.key.pem"
    _write_private(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return cert, chain, key_path


def revoke_certificate(auth: Authority, serial: int, *, author: str, reason: str) -> None:
    """Revokes one certificate (the ``cert-revoque`` scenario) and re-publishes the CRLs."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    auth.state["certificates"][str(serial)]["revoked"] = now.isoformat()
    auth.intermediate.revoked[serial] = now
    auth._audit(author, "certificate.revoked", str(serial), reason=reason)  # saves the state
    auth.publish()


class LiveAuthority(Authority):
    """An authority that follows changes made by other processes (``caducee authority
    operator revoke`` while the sandbox runs): its state is re-read from ``authority.json``
    when the file changes, before answering OCSP and before re-publishing, so a running
    server never serves or re-publishes a stale state; CRLs are mirrored to ``mirror_crl``."""

    passphrase: bytes = b""
    mirror_crl: Path | None = None
    _mtime: float = 0.0

    @classmethod
    def open_live(
        cls, directory: Path, passphrase: bytes, mirror_crl: Path | None
    ) -> LiveAuthority:
        base = Authority.open(directory, passphrase)
        live = cls(
            base.directory,
            base.root,
            base.intermediate,
            base.signer_cert,
            base.signer_key,
            base.state,
        )
        live.passphrase = passphrase
        live.mirror_crl = mirror_crl
        live._mtime = (directory / "authority.json").stat().st_mtime
        return live

    def _reload_if_changed(self) -> None:
        path = self.directory / "authority.json"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime == self._mtime:
            return
        fresh = Authority.open(self.directory, self.passphrase)
        self.state = fresh.state
        self.intermediate.revoked.clear()
        self.intermediate.revoked.update(fresh.intermediate.revoked)
        self._mtime = mtime

    def publish(self) -> None:
        self._reload_if_changed()
        super().publish()
        if self.mirror_crl is not None:
            self.mirror_crl.mkdir(parents=True, exist_ok=True)
            for name in ("aci.crl", "acr.crl"):
                shutil.copyfile(self.directory / "public" / name, self.mirror_crl / name)

    def ocsp_response(self, request_der: bytes) -> bytes:
        self._reload_if_changed()
        return super().ocsp_response(request_der)


def open_sandbox_authority(info: dict[str, Any]) -> LiveAuthority | None:
    """The authority of a sandbox (None for a sandbox made before the authority existed)."""
    auth_info = info.get("authority")
    if not isinstance(auth_info, dict) or not auth_info.get("directory"):
        return None
    directory = Path(str(auth_info["directory"]))
    passphrase = (directory / PASSPHRASE_FILE).read_text(encoding="utf-8").splitlines()[0]
    crl_dir = info.get("crl_dir")
    return LiveAuthority.open_live(
        directory, passphrase.encode(), Path(crl_dir) if isinstance(crl_dir, str) else None
    )


def _listen(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class AuthorityThread:
    """The authority served from its own thread and event loop. Operators ask its OCSP
    responder synchronously from their event loop (``TrustPolicy`` checks are synchronous):
    in one process, a responder on the same loop would never answer."""

    def __init__(
        self,
        auth: LiveAuthority,
        auth_info: dict[str, Any],
        *,
        republish_seconds: float = 3600.0,
    ) -> None:
        self.auth = auth
        self.info = auth_info
        self.republish_seconds = republish_seconds
        self.bound: dict[str, tuple[str, int]] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="sandbox-authority", daemon=True)

    def _main(self) -> None:
        from caducee.trust.authority.server import serve_authority

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()

            def on_ready(bound: dict[str, tuple[str, int]]) -> None:
                self.bound = bound
                self._ready.set()

            await serve_authority(
                self.auth,
                self.auth.passphrase,
                https_listen=_listen(self.info.get("https")),
                http_listen=_listen(self.info.get("http")),
                republish_seconds=self.republish_seconds,
                on_ready=on_ready,
            )

        try:
            asyncio.run(serve())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported to start()
            self._error = exc
        finally:
            self._ready.set()

    async def start(self) -> dict[str, tuple[str, int]]:
        """Publishes fresh CRLs and the list, starts serving; returns the bound addresses."""
        await asyncio.to_thread(self.auth.publish)  # CRLs valid from now on (two days)
        self._thread.start()
        ok = await asyncio.to_thread(self._ready.wait, 30.0)
        if self._error is not None:
            raise self._error
        if not ok or not self.bound:
            await self.stop()
            raise OSError("the sandbox authority did not start")
        return self.bound

    async def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 15)
