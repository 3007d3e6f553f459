"""Operator side of the trust authority: fetch, verify and install the liste blanche and CRLs.

Issue 4 §2: operators fetch the list at start, periodically (``trust.refresh_seconds``) and on
demand (``caducee trust refresh``); verify its SHA-256 checksum file (as the real publisher
provides) and its detached CMS signature when configured; keep the last good copy on disk
(``trust.cache_file``, default ``<data_dir>/trust/liste-blanche.xml``) and keep working on it
when the authority is unreachable, with a warning that grows with its age; past
``trust.max_age_seconds`` the copy is refused (relay stops) rather than trusted forever. A list
that fails to parse or verify never replaces the last good one. CRLs listed in
``trust.crl_urls`` are fetched into ``tls.crl_dir`` after their signature checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509

from caducee.config.model import NodeConfig, TrustConfig
from caducee.core.errors import ConfigError, TrustError
from caducee.trust.atomic import atomic_write
from caducee.trust.cms import verify_detached
from caducee.trust.crl import CrlSet, load_crl_file
from caducee.trust.listeblanche import ListeBlanche, ListeBlancheError, parse_liste_blanche

__all__ = [
    "RefreshOutcome",
    "cache_path",
    "fetch_crls",
    "fetch_liste_blanche",
    "refresh_once",
    "verify_checksum",
]

log = logging.getLogger(__name__)

_HEX64 = re.compile(rb"\b([0-9a-fA-F]{64})\b")
_TIMEOUT = 30.0
_MAX_BYTES = 64 * 1024 * 1024


def cache_path(trust: TrustConfig, data_dir: Path | None) -> Path | None:
    """Where the last good copy of a fetched list lives."""
    if trust.cache_file is not None:
        return trust.cache_file
    if data_dir is not None:
        return data_dir / "trust" / "liste-blanche.xml"
    return None


def _ssl_context(trust: TrustConfig) -> ssl.SSLContext:
    if trust.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(trust.ca_bundle))
    return ssl.create_default_context()


def _get(url: str, trust: TrustConfig, *, allow_http: bool = False) -> bytes:
    if not url.startswith("https://") and not (allow_http and url.startswith("http://")):
        raise ConfigError([f"{url}: only https:// URLs are accepted here"])
    try:
        with httpx.Client(verify=_ssl_context(trust), timeout=_TIMEOUT) as client:
            resp = client.get(url)
            resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise TrustError(f"cannot fetch {url}: {exc}") from exc
    if len(resp.content) > _MAX_BYTES:
        raise TrustError(f"{url}: response too large")
    return resp.content


def verify_checksum(data: bytes, checksum_file: bytes) -> None:
    """Checks ``data`` against a SHA-256 checksum file (first 64-hex-digit token)."""
    match = _HEX64.search(checksum_file)
    if match is None:
        raise TrustError("checksum file holds no SHA-256 value")
    want = match.group(1).decode().lower()
    got = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(want, got):
        raise TrustError(f"checksum mismatch: published {want[:16]}…, computed {got[:16]}…")


def _fetch_verified(trust: TrustConfig) -> tuple[bytes, ListeBlanche]:
    url = trust.liste_blanche
    data = _get(url, trust)
    if trust.checksum_url:
        verify_checksum(data, _get(trust.checksum_url, trust))
    if trust.signature_url:
        if trust.ca_bundle is None:
            raise ConfigError(["trust.signature_url needs trust.ca_bundle to verify the signer"])
        ca_certs = x509.load_pem_x509_certificates(trust.ca_bundle.read_bytes())
        verify_detached(data, _get(trust.signature_url, trust), ca_certs)
    return data, parse_liste_blanche(data)


def _last_good(trust: TrustConfig, path: Path | None) -> tuple[ListeBlanche, float]:
    if path is None or not path.is_file():
        raise TrustError("no last good copy of the liste blanche on disk")
    age = max(0.0, time.time() - path.stat().st_mtime)
    if age > trust.max_age_seconds:
        raise TrustError(
            f"last good liste blanche is {age / 3600:.1f} h old, beyond trust.max_age_seconds "
            f"({trust.max_age_seconds / 3600:.1f} h): refusing to relay on it"
        )
    liste = parse_liste_blanche(path.read_bytes())
    level = logging.ERROR if age > trust.max_age_seconds / 2 else logging.WARNING
    log.log(level, "using the last good liste blanche, %.1f h old (%s)", age / 3600, path)
    return liste, age


def fetch_liste_blanche(
    cfg: TrustConfig | NodeConfig, data_dir: Path | None = None
) -> ListeBlanche:
    """The list in force: freshly fetched and verified, else the last good copy (warning).

    With a :class:`NodeConfig`, the cache defaults to ``<data_dir>/trust/`` and the CRLs of
    ``trust.crl_urls`` are refreshed too. Raises TrustError if neither is usable.
    """
    trust = cfg.trust if isinstance(cfg, NodeConfig) else cfg
    if isinstance(cfg, NodeConfig):
        data_dir = data_dir or cfg.data_dir
        if trust.crl_urls:
            try:
                fetch_crls(cfg)
            except (TrustError, ConfigError, OSError) as exc:
                log.warning("CRL refresh failed, keeping the previous CRLs: %s", exc)
    if "://" not in trust.liste_blanche:
        return parse_liste_blanche(Path(trust.liste_blanche).read_bytes())
    path = cache_path(trust, data_dir)
    try:
        data, liste = _fetch_verified(trust)
    except (TrustError, ListeBlancheError, ConfigError, OSError) as exc:
        log.warning("liste blanche refresh from %s failed: %s", trust.liste_blanche, exc)
        return _last_good(trust, path)[0]
    if path is not None:
        atomic_write(path, data)
    return liste


def fetch_crls(cfg: NodeConfig) -> int:
    """Downloads ``trust.crl_urls`` into ``tls.crl_dir``; each must verify against the CA
    bundle before it replaces the previous file. Returns how many were installed."""
    crl_dir = cfg.tls.crl_dir
    if crl_dir is None:
        raise ConfigError(["trust.crl_urls needs tls.crl_dir"])
    ca_certs = x509.load_pem_x509_certificates(cfg.tls.ca_bundle.read_bytes())
    installed = 0
    for url in cfg.trust.crl_urls:
        data = _get(url, cfg.trust, allow_http=True)  # CRLs are signed; IGC-Santé uses http
        name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1]) or "authority.crl"
        if not name.endswith((".crl", ".pem", ".der")):
            name += ".crl"
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / name
            probe.write_bytes(data)
            load_crl_file(probe)
            CrlSet.load_dir(Path(tmp), ca_certs)  # issuer known, signature valid
        atomic_write(crl_dir / name, data)
        installed += 1
    return installed


@dataclass(frozen=True)
class RefreshOutcome:
    """What ``caducee trust refresh`` did."""

    ok: bool  # a fresh list was fetched, verified and installed
    entries: int | None
    generated: dt.datetime | None
    message: str

    def summary(self) -> str:
        state = "refreshed" if self.ok else "NOT refreshed"
        figures = ""
        if self.entries is not None and self.generated is not None:
            figures = f": {self.entries} entries generated {self.generated:%Y-%m-%dT%H:%M:%SZ}"
        return f"liste blanche {state}{figures}; {self.message}"


def refresh_once(cfg: NodeConfig) -> RefreshOutcome:
    """One refresh of the node's list and CRLs; the last good copy stays on any failure."""
    trust = cfg.trust
    crl_note = ""
    if trust.crl_urls:
        try:
            crl_note = f"{fetch_crls(cfg)} CRL(s) installed; "
        except (TrustError, ConfigError, OSError) as exc:
            crl_note = f"CRL refresh failed ({exc}); "
    if "://" not in trust.liste_blanche:
        liste = parse_liste_blanche(Path(trust.liste_blanche).read_bytes())
        return RefreshOutcome(
            True, len(liste.entries), liste.generated, crl_note + "local file re-read"
        )
    path = cache_path(trust, cfg.data_dir)
    try:
        data, liste = _fetch_verified(trust)
    except (TrustError, ListeBlancheError, ConfigError, OSError) as exc:
        try:
            old, age = _last_good(trust, path)
        except (TrustError, ListeBlancheError) as exc2:
            return RefreshOutcome(False, None, None, f"{crl_note}{exc}; {exc2}")
        return RefreshOutcome(
            False,
            len(old.entries),
            old.generated,
            f"{crl_note}{exc}; last good copy kept ({age / 3600:.1f} h old)",
        )
    if path is not None:
        atomic_write(path, data)
    return RefreshOutcome(
        True, len(liste.entries), liste.generated, f"{crl_note}installed in {path}"
    )
