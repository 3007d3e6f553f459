"""Fixtures of the auth tests: a per-run PKI and a running IdP (real HTTPS on 127.0.0.1:0)."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from caducee.auth.idp import store as store_module
from caducee.auth.idp.oauth import IdpSettings
from caducee.auth.idp.server import IdpServer, IdpTls
from caducee.auth.passwords import hash_password
from caducee.auth.sasl_mechs import OAuthBearerMechanism, XOAuth2Mechanism
from caducee.auth.tokens import TokenValidator
from caducee.auth.totp import generate_secret, totp
from caducee.config.model import NodeConfig, TlsConfig
from caducee.core.model import MailboxType
from caducee.storage import open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring

from .pki import Issued, Pki

REDIRECT = "https://lps.example/callback"
PASSWORD = "correct horse battery staple"
IDNPS = "810002345678"
AUDIENCE = "mssante-op1"


@pytest.fixture(autouse=True)
def _hash_test_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The IdP fixture creates a user per test; hashing its password (scrypt, ~0.2 s on a
    loaded machine) once per run keeps the suite fast. Verification stays real."""
    monkeypatch.setattr(store_module, "hash_password", _cached_hash)


@functools.cache
def _cached_hash(password: str) -> str:
    return hash_password(password)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@dataclass
class RunningIdp:
    server: IdpServer
    base: str
    pki: Pki
    totp_secret: str
    card: Issued
    rs_secret: str

    def client_ctx(self, cert: Issued | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        if cert is not None:
            ctx.load_cert_chain(cert.cert, cert.key)
        return ctx

    def http(self, cert: Issued | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, verify=self.client_ctx(cert), timeout=10)


def settings_for_tests(**overrides: object) -> IdpSettings:
    values: dict[str, object] = {
        "issuer": "",
        "access_token_lifetime": 300,
        "max_failures": 3,
        "lockout_seconds": 60.0,
        "rate_limit": 50,
    }
    values.update(overrides)
    return IdpSettings(**values)  # type: ignore[arg-type]


async def start_idp(tmp_path: Path, pki: Pki, settings: IdpSettings) -> RunningIdp:
    srv_cert = pki.server()
    card = pki.client("899700218896/Jeanne DUPONT", "CPS")
    server = IdpServer(
        tmp_path / "idp",
        IdpTls(srv_cert.cert, srv_cert.key, client_ca=pki.ca_file),
        settings=settings,
    )
    secret = generate_secret()
    server.store.add_user(
        "jdupont",
        IDNPS,
        password=PASSWORD,
        totp_secret=secret,
        given_name="Jeanne",
        family_name="DUPONT",
        profession="10",
        cert_subject=None,
    )
    from caducee.auth.certs import normalise_dn

    server.store.add_user(
        "carte",
        "899700218896",
        cert_subject=normalise_dn(card.dn),
        given_name="Paul",
        family_name="CARTE",
    )
    server.store.add_client("lps", [REDIRECT], audience=[AUDIENCE], name="Logiciel de test")
    rs_secret = secrets.token_urlsafe(24)
    server.store.add_client(AUDIENCE, [], audience=[AUDIENCE], secret=rs_secret, name="Opérateur")
    host, port = await server.start()
    return RunningIdp(server, f"https://{host}:{port}", pki, secret, card, rs_secret)


@pytest.fixture
async def idp(tmp_path: Path, pki: Pki) -> AsyncIterator[RunningIdp]:
    running = await start_idp(tmp_path, pki, settings_for_tests())
    try:
        yield running
    finally:
        await running.server.stop()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def authorize_query(challenge: str, state: str = "st4te", **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": "lps",
        "redirect_uri": REDIRECT,
        "scope": "openid scope_all",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n0nce",
    }
    params.update(extra)
    return urlencode(params)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "login page has no CSRF field"
    return m.group(1)


async def login_and_get_code(
    idp: RunningIdp, client: httpx.AsyncClient, challenge: str, *, code: str | None = None
) -> str:
    """Drives the browser part: authorize -> login page -> password + TOTP -> code."""
    query = authorize_query(challenge)
    page = await client.get(f"/authorize?{query}")
    assert page.status_code == 200, page.text
    resp = await client.post(
        "/login/password",
        data={
            "csrf": csrf_of(page.text),
            "query": query,
            "username": "jdupont",
            "password": PASSWORD,
            "totp": code or totp(idp.totp_secret),
        },
    )
    assert resp.status_code == 303, resp.text
    resp = await client.get(resp.headers["location"])
    assert resp.status_code == 302, resp.text
    loc = urlsplit(resp.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    qs = parse_qs(loc.query)
    assert qs["state"] == ["st4te"]
    return qs["code"][0]


async def exchange(client: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    return await client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "lps",
            "code_verifier": verifier,
        },
    )


# -- a node "b" (domain b.test) for the end-to-end login tests -------------------------------


async def node_b_storage(tmp_path: Path) -> tuple[Storage, Path]:
    """A fresh SQLite store of node "b" under ``tmp_path/data`` and its keyring file."""
    keyring = tmp_path / "keyring"
    create_keyring(keyring)
    return await open_sqlite(tmp_path / "data", keyring, node="b"), keyring


async def add_jeanne(storage: Storage, welcome: bool = False) -> None:
    """Jeanne Dupont (IDNPS ``IDNPS``) with her PER mailbox, optionally one message in it."""
    acc = storage.accounts
    await acc.create_account("jdupont", None, display_name="Jeanne Dupont", idnps=IDNPS)
    await acc.create_mailbox("jeanne.dupont@b.test", MailboxType.PER, IDNPS)
    await acc.grant("jdupont", "jeanne.dupont@b.test", "lrswipkxtea")
    if welcome:
        blob = await storage.blobs.put(b"From: a@b.test\r\nSubject: bienvenue\r\n\r\nbonjour\r\n")
        mbox = await acc.get_mailbox("jeanne.dupont@b.test")
        assert mbox is not None
        await storage.messages.deliver(blob, [mbox.mailbox_id])


def node_b_config(tmp_path: Path, keyring: Path, tls: TlsConfig, **extra: object) -> NodeConfig:
    """Node "b" with submission on a free port and no relay listener; ``extra`` adds sections."""
    return NodeConfig.model_validate(
        {
            "name": "b",
            "data_dir": str(tmp_path / "data"),
            "domains": ["b.test"],
            "crypto": {"keyring_file": str(keyring)},
            "tls": tls.model_dump(),
            "trust": {"liste_blanche": str(tmp_path / "liste.xml")},
            "smtp": {
                "hostname": "mx.b.test",
                "relay_listen": None,
                "submission_listen": "127.0.0.1:0",
            },
            **extra,
        }
    )


def token_mechanisms(
    idp: RunningIdp, storage: Storage
) -> dict[str, OAuthBearerMechanism | XOAuth2Mechanism]:
    """OAUTHBEARER and XOAUTH2 validating the IdP's tokens for ``AUDIENCE``."""
    validator = TokenValidator(
        idp.base, audience=AUDIENCE, jwks_url=f"{idp.base}/jwks", verify=idp.client_ctx()
    )
    return {
        "OAUTHBEARER": OAuthBearerMechanism(validator, storage.accounts),
        "XOAUTH2": XOAuth2Mechanism(validator, storage.accounts),
    }


async def token_of(idp: RunningIdp) -> str:
    """An access token for Jeanne, through the real login, code and PKCE exchange."""
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
    return str(tok["access_token"])
