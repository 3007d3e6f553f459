"""``caducee idp``: the sandbox identity provider (Pro Santé Connect's model).

    caducee idp serve --dir D [--listen 127.0.0.1:8443] [--cert F --key F] [--client-ca F]
    caducee idp user add --dir D LOGIN --idnps N [--password-env V | --password-file F]
    caducee idp user list|unlock|passwd ...
    caducee idp client add --dir D CLIENT_ID --redirect-uri U --audience A [--confidential]
    caducee idp client list --dir D
    caducee idp rotate-key --dir D
    caducee idp audit --dir D
    caducee idp token --issuer URL --client-id C --redirect-uri U --login L ...  (sandbox)

Secrets never go on the command line: passwords come from a file, an environment variable or
the terminal; generated secrets (TOTP, client secret) are printed once.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import os
import secrets
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from caducee.core.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from caducee.auth.idp.store import IdpStore

__all__ = ["register"]


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, required=True, help="the IdP's data directory")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    idp = sub.add_parser(
        "idp",
        help="sandbox identity provider (OpenID Connect, Pro Santé Connect-style)",
        description="OpenID Connect / OAuth 2.0 identity provider for the sandbox: "
        "authorization code + PKCE, refresh tokens, JWT access tokens with the IDNPS.",
    )
    isub = idp.add_subparsers(dest="idp_command", metavar="COMMAND", required=True)

    serve = isub.add_parser("serve", help="run the IdP over HTTPS")
    _add_dir(serve)
    serve.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default %(default)s)")
    serve.add_argument("--issuer", default="", help="public issuer URL (default https://HOST:PORT)")
    serve.add_argument("--cert", type=Path, help="server certificate chain (PEM)")
    serve.add_argument("--key", type=Path, help="server private key (PEM)")
    serve.add_argument("--client-ca", type=Path, help="CA bundle of the cards (enables card login)")
    serve.add_argument("--crl", type=Path, help="CRL file (PEM) of the cards' CA")
    serve.add_argument(
        "--access-token-lifetime", type=int, default=300, help="seconds (default %(default)s)"
    )
    serve.set_defaults(func=_serve)

    user = isub.add_parser("user", help="manage users (health professionals)")
    usub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    add = usub.add_parser("add", help="add a user; prints the TOTP secret once")
    _add_dir(add)
    add.add_argument("login")
    add.add_argument("--idnps", required=True, help="IDNPS: 8 + RPPS, or 0 + ADELI")
    add.add_argument("--given-name", default="")
    add.add_argument("--family-name", default="")
    add.add_argument("--profession", default="", help="TRE_G15 profession code (10 = médecin)")
    add.add_argument("--email", default="")
    add.add_argument("--cert-subject", help="subject DN of the user's card certificate")
    add.add_argument("--password-env", help="read the password from this environment variable")
    add.add_argument("--password-file", type=Path, help="read the password from this file")
    add.add_argument("--no-password", action="store_true", help="card login only")
    add.add_argument("--no-totp", action="store_true", help="password without TOTP (demo only)")
    add.set_defaults(func=_user_add)
    lst = usub.add_parser("list", help="list users")
    _add_dir(lst)
    lst.set_defaults(func=_user_list)
    unlock = usub.add_parser("unlock", help="clear a lockout")
    _add_dir(unlock)
    unlock.add_argument("login")
    unlock.set_defaults(func=_user_unlock)
    passwd = usub.add_parser("passwd", help="set a user's password")
    _add_dir(passwd)
    passwd.add_argument("login")
    passwd.add_argument("--password-env")
    passwd.add_argument("--password-file", type=Path)
    passwd.set_defaults(func=_user_passwd)

    client = isub.add_parser("client", help="manage OAuth clients (practice software, operators)")
    csub = client.add_subparsers(dest="client_command", metavar="COMMAND", required=True)
    cadd = csub.add_parser("add", help="register a client; prints its secret once")
    _add_dir(cadd)
    cadd.add_argument("client_id")
    cadd.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI")
    cadd.add_argument(
        "--audience", action="append", default=[], help="resource (operator) the tokens are for"
    )
    cadd.add_argument("--name", default="")
    cadd.add_argument(
        "--confidential", action="store_true", help="give it a secret (servers, operators)"
    )
    cadd.set_defaults(func=_client_add)
    clist = csub.add_parser("list", help="list clients")
    _add_dir(clist)
    clist.set_defaults(func=_client_list)

    tok = isub.add_parser(
        "token",
        help="sandbox: log in without a browser and print an access token (or XOAUTH2 string)",
        description="Drives the sandbox IdP's login form (password + TOTP) as a public client "
        "with PKCE and prints the access token on stdout, for curl --oauth2-bearer. Sandbox "
        "only: the token is a live credential for five minutes.",
    )
    tok.add_argument("--issuer", required=True, help="https URL of the IdP")
    tok.add_argument("--client-id", required=True)
    tok.add_argument("--redirect-uri", required=True, help="a redirect URI registered for it")
    tok.add_argument("--login", required=True)
    tok.add_argument("--password-env", help="environment variable holding the password")
    tok.add_argument("--password-file", type=Path)
    tok.add_argument("--totp-secret-env", help="environment variable holding the TOTP secret")
    tok.add_argument("--ca", type=Path, help="CA bundle (or self-signed cert) of the IdP")
    tok.add_argument(
        "--xoauth2", metavar="ADDRESS", help="print the base64 XOAUTH2 response for ADDRESS"
    )
    tok.set_defaults(func=_token)

    rotate = isub.add_parser("rotate-key", help="add a new token-signing key")
    _add_dir(rotate)
    rotate.set_defaults(func=_rotate)

    audit = isub.add_parser("audit", help="recent login and token events")
    _add_dir(audit)
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=_audit)


def _store(args: argparse.Namespace) -> IdpStore:
    from caducee.auth.idp.store import IdpStore

    return IdpStore(args.dir)


def _read_password(args: argparse.Namespace) -> str:
    if getattr(args, "password_env", None):
        value = os.environ.get(args.password_env)
        if not value:
            raise ConfigError([f"environment variable {args.password_env} is not set"])
        return value
    if getattr(args, "password_file", None):
        return str(args.password_file.read_text(encoding="utf-8").splitlines()[0])
    if not sys.stdin.isatty():
        raise InvalidInput("no password: use --password-env or --password-file")
    first = getpass.getpass("Mot de passe : ")
    if first != getpass.getpass("Confirmation : "):
        raise InvalidInput("the passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    from caducee.auth.totp import generate_secret, provisioning_uri

    password = None if args.no_password else _read_password(args)
    if password is not None and len(password) < 12:
        raise InvalidInput("password too short (12 characters at least)")
    secret = None if (args.no_totp or password is None) else generate_secret()
    store = _store(args)
    try:
        user = store.add_user(
            args.login,
            args.idnps,
            password=password,
            totp_secret=secret,
            given_name=args.given_name,
            family_name=args.family_name,
            profession=args.profession,
            email=args.email,
            cert_subject=args.cert_subject,
        )
    finally:
        store.close()
    print(f"user {user.username} (sub {user.user_id}, IDNPS {user.idnps}) created")
    if secret is not None:
        print(f"TOTP secret: {secret}")
        print(f"TOTP URI: {provisioning_uri(secret, user.username, 'Caducée')}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    import time

    store = _store(args)
    try:
        users = store.list_users()
    finally:
        store.close()
    for u in users:
        methods = ",".join(
            m
            for m, on in (("pwd", u.has_password), ("totp", u.has_totp), ("card", u.cert_subject))
            if on
        )
        locked = " locked" if u.locked_until > time.time() else ""
        print(f"{u.username}\t{u.idnps}\t{u.given_name} {u.family_name}\t{methods}{locked}")
    return 0


def _user_unlock(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        store.unlock(args.login)
    finally:
        store.close()
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args)
    store = _store(args)
    try:
        store.set_password(args.login, password)
    finally:
        store.close()
    return 0


def _client_add(args: argparse.Namespace) -> int:
    secret = secrets.token_urlsafe(32) if args.confidential else None
    store = _store(args)
    try:
        client = store.add_client(
            args.client_id,
            args.redirect_uri,
            audience=args.audience,
            secret=secret,
            name=args.name,
        )
    finally:
        store.close()
    kind = "confidential" if secret else "public (PKCE)"
    print(f"client {client.client_id} ({kind}) registered")
    if secret:
        print(f"client secret: {secret}")
    return 0


def _client_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        clients = store.list_clients()
    finally:
        store.close()
    for c in clients:
        kind = "confidential" if c.secret_hash else "public"
        print(f"{c.client_id}\t{kind}\taud={','.join(c.audience)}\t{' '.join(c.redirect_uris)}")
    return 0


def _token(args: argparse.Namespace) -> int:
    import base64
    import ssl

    from caducee.auth.client import OidcClient, headless_login, xoauth2_response
    from caducee.auth.totp import totp

    password = _read_password(args)
    code = ""
    if args.totp_secret_env:
        secret = os.environ.get(args.totp_secret_env)
        if not secret:
            raise ConfigError([f"environment variable {args.totp_secret_env} is not set"])
        code = totp(secret)
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(args.ca)) if args.ca else True
    )
    client = OidcClient(args.issuer, args.client_id, args.redirect_uri, verify=verify)
    tokens = asyncio.run(headless_login(client, args.login, password, code))
    if args.xoauth2:
        print(base64.b64encode(xoauth2_response(args.xoauth2, tokens.access_token)).decode())
    else:
        print(tokens.access_token)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from caducee.auth.idp.keys import SigningKeys

    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    print(f"new signing key {SigningKeys(args.dir / 'signing-keys.json').rotate()}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        events = store.audit_events(args.limit)
    finally:
        store.close()
    for t, kind, outcome, actor, detail in events:
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{stamp}\t{kind}\t{outcome}\t{actor}\t{detail}")
    return 0


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed server certificate for a sandbox without a trust-space CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = directory / "tls-cert.pem", directory / "tls-key.pem"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def _serve(args: argparse.Namespace) -> int:
    from caducee.auth.idp.oauth import IdpSettings
    from caducee.auth.idp.server import IdpServer, IdpTls

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError([f"--listen: not HOST:PORT: {args.listen!r}"])
    host = host.strip("[]")
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (args.cert is None) != (args.key is None):
        raise ConfigError(["--cert and --key go together"])
    cert, key = (args.cert, args.key) if args.cert else _self_signed(args.dir, host)
    settings = IdpSettings(issuer=args.issuer, access_token_lifetime=args.access_token_lifetime)
    server = IdpServer(
        args.dir,
        IdpTls(cert, key, client_ca=args.client_ca, crl_file=args.crl),
        host=host,
        port=int(port),
        settings=settings,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = await server.start()
        print(f"IdP issuer {server.issuer} listening on {bound[0]}:{bound[1]}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(run())
    return 0
