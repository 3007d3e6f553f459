"""SASL XOAUTH2, OAUTHBEARER (RFC 7628) and EXTERNAL: parsers, exchanges, authorization.

Accounts live in the real SQLite storage engine; tokens come from the running IdP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caducee.auth.sasl_mechs import (
    ExternalMechanism,
    OAuthBearerMechanism,
    XOAuth2Mechanism,
    parse_oauthbearer,
    parse_xoauth2,
)
from caducee.auth.tokens import TokenValidator
from caducee.core.errors import AuthenticationFailed, InvalidInput
from caducee.core.model import MailboxType
from caducee.smtp.sasl import SaslCancelled, SaslMechanism
from caducee.storage import open_sqlite
from caducee.storage.interfaces import Storage
from caducee.storage.keyring import create_keyring
from caducee.testing.certs import TrustSpaceCA

from .conftest import AUDIENCE, IDNPS, RunningIdp, exchange, login_and_get_code, pkce

# RFC 7628 §4.1 example (the token is the RFC's, not one of ours)
RFC7628_41 = (
    b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
    b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
)


class Script:
    """The front-end side of the exchange: records challenges, replays client answers."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.challenges: list[bytes] = []

    async def __call__(self, data: bytes) -> bytes:
        self.challenges.append(data)
        if not self.answers:
            raise SaslCancelled("client cancelled")
        return self.answers.pop(0)


# -- parsers ----------------------------------------------------------------------------


def test_oauthbearer_rfc7628_example() -> None:
    creds = parse_oauthbearer(RFC7628_41)
    assert creds.authzid == "user@example.com"
    assert creds.token == "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert creds.fields == {"host": "server.example.com", "port": "143"}
    assert "vF9d" not in repr(creds)  # tokens never reach logs through repr


def test_oauthbearer_without_authzid_and_escapes() -> None:
    assert parse_oauthbearer(b"n,,\x01auth=Bearer abc\x01\x01").authzid == ""
    assert parse_oauthbearer(b"y,a=a=2Cb=3Dc,\x01auth=Bearer abc\x01\x01").authzid == "a,b=c"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x01",  # the client's answer to an error challenge, not a first response
        b"n,,auth=Bearer abc\x01\x01",  # no kvsep after the GS2 header
        b"n,,\x01auth=Bearer abc\x01",  # missing final kvsep
        b"x,,\x01auth=Bearer abc\x01\x01",  # bad cbind flag
        b"n,u=x,\x01auth=Bearer abc\x01\x01",  # bad authzid prefix
        b"n,a=a=2Xb,\x01auth=Bearer abc\x01\x01",  # bad saslname escape
        b"n,,\x01host=h\x01\x01",  # no auth
        b"n,,\x01auth=Basic abc\x01\x01",  # not a bearer token
        b"n,,\x01auth=Bearer a b\x01\x01",  # not a b64token
        b"n,,\x01auth=Bearer abc\x01auth=Bearer def\x01\x01",  # duplicate key
        b"n,,\x01h0st=x\x01auth=Bearer abc\x01\x01",  # key is ALPHA only
    ],
)
def test_oauthbearer_malformed(bad: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_oauthbearer(bad)


def test_oauthbearer_channel_binding_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        parse_oauthbearer(b"p=tls-unique,,\x01auth=Bearer abc\x01\x01")


def test_xoauth2_format() -> None:
    creds = parse_xoauth2(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3\x01\x01")
    assert creds.authzid == "someuser@example.com" and creds.token == "ya29.vF9dft4qmTc2Nvb3"
    for bad in (
        b"user=a\x01auth=Bearer t\x01",
        b"auth=Bearer t\x01\x01",
        b"user=a\x01\x01",
        b"user=a\x01auth=t\x01\x01",
    ):
        with pytest.raises(InvalidInput):
            parse_xoauth2(bad)


def test_mechanisms_satisfy_the_smtp_protocol() -> None:
    def accepts(m: SaslMechanism) -> str:
        return m.name

    v = TokenValidator("https://idp", audience="a", jwks={"keys": []})
    assert accepts(XOAuth2Mechanism(v, None)) == "XOAUTH2"  # type: ignore[arg-type]
    assert accepts(OAuthBearerMechanism(v, None)) == "OAUTHBEARER"  # type: ignore[arg-type]
    assert accepts(ExternalMechanism({}, None)) == "EXTERNAL"  # type: ignore[arg-type]


# -- exchanges with real tokens and real storage ------------------------------------------


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    create_keyring(tmp_path / "keyring")
    st = await open_sqlite(tmp_path / "data", tmp_path / "keyring")
    acc = st.accounts
    await acc.create_account("jdupont", None, display_name="Jeanne Dupont", idnps=IDNPS)
    await acc.create_mailbox("jeanne.dupont@op1.test", MailboxType.PER, IDNPS)
    await acc.create_mailbox("secretariat@op1.test", MailboxType.ORG, "123456789")
    await acc.create_mailbox("autre@op1.test", MailboxType.PER, "810009999999")
    await acc.grant("jdupont", "jeanne.dupont@op1.test", "lrswipkxtea")
    await acc.grant("jdupont", "secretariat@op1.test", "lrswi")
    await acc.create_account("labo-app", None, display_name="Automate labo")
    await acc.create_mailbox("labo@op1.test", MailboxType.APP, "26750045200011")
    await acc.grant("labo-app", "labo@op1.test", "lrswipkxtea")
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def token(idp: RunningIdp) -> str:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
    return str(tok["access_token"])


def _validator(idp: RunningIdp) -> TokenValidator:
    return TokenValidator(
        idp.base, audience=AUDIENCE, jwks_url=f"{idp.base}/jwks", verify=idp.client_ctx()
    )


async def test_xoauth2_success_and_delegated_mailbox(
    idp: RunningIdp, storage: Storage, token: str
) -> None:
    mech = XOAuth2Mechanism(_validator(idp), storage.accounts)
    for user in ("jeanne.dupont@op1.test", "secretariat@op1.test", "jdupont"):
        script = Script()
        account = await mech.authenticate(
            f"user={user}\x01auth=Bearer {token}\x01\x01".encode(), script
        )
        assert account.login == "jdupont" and account.idnps == IDNPS
        assert script.challenges == []


async def test_xoauth2_other_mailbox_gets_error_challenge_then_fails(
    idp: RunningIdp, storage: Storage, token: str
) -> None:
    mech = XOAuth2Mechanism(_validator(idp), storage.accounts)
    script = Script(b"")
    with pytest.raises(AuthenticationFailed):
        await mech.authenticate(
            f"user=autre@op1.test\x01auth=Bearer {token}\x01\x01".encode(), script
        )
    assert len(script.challenges) == 1
    error = json.loads(script.challenges[0])
    assert error["status"] == "401" and error["schemes"] == "bearer"
    assert error["openid-configuration"] == f"{idp.base}/.well-known/openid-configuration"


async def test_xoauth2_without_initial_response(
    idp: RunningIdp, storage: Storage, token: str
) -> None:
    mech = XOAuth2Mechanism(_validator(idp), storage.accounts)
    script = Script(f"user=jdupont\x01auth=Bearer {token}\x01\x01".encode())
    assert (await mech.authenticate(None, script)).login == "jdupont"
    assert script.challenges == [b""]


async def test_oauthbearer_success_and_bad_token(
    idp: RunningIdp, storage: Storage, token: str
) -> None:
    mech = OAuthBearerMechanism(_validator(idp), storage.accounts)
    good = (
        f"n,a=jeanne.dupont@op1.test,\x01host=127.0.0.1\x01port=143\x01auth=Bearer {token}\x01\x01"
    )
    assert (await mech.authenticate(good.encode(), Script())).login == "jdupont"
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[::-1]}"
    script = Script(b"\x01")
    with pytest.raises(AuthenticationFailed):
        await mech.authenticate(f"n,,\x01auth=Bearer {tampered}\x01\x01".encode(), script)
    assert json.loads(script.challenges[0])["status"] == "invalid_token"


async def test_oauthbearer_cancel_during_error(idp: RunningIdp, storage: Storage) -> None:
    mech = OAuthBearerMechanism(_validator(idp), storage.accounts)
    with pytest.raises(SaslCancelled):
        await mech.authenticate(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01", Script())


async def test_token_for_unknown_professional(idp: RunningIdp, tmp_path: Path, token: str) -> None:
    create_keyring(tmp_path / "kr2")
    empty = await open_sqlite(tmp_path / "empty", tmp_path / "kr2")
    try:
        mech = XOAuth2Mechanism(_validator(idp), empty.accounts)
        with pytest.raises(AuthenticationFailed):
            await mech.authenticate(f"user=x\x01auth=Bearer {token}\x01\x01".encode(), Script(b""))
    finally:
        await empty.close()


async def test_external_maps_certificate_to_app_account(tmp_path: Path, storage: Storage) -> None:
    ca = TrustSpaceCA.create(tmp_path / "ca")
    app_cert = ca.issue_client("automate.labo.test", ou="26750045200011", o="LABO TEST")
    other = ca.issue_client("autre.test", ou="11111111111111")
    mech = ExternalMechanism({app_cert.subject_dn: "labo-app"}, storage.accounts)
    conn = mech.for_connection(app_cert.der)
    assert (await conn.authenticate(b"", Script())).login == "labo-app"
    assert (await conn.authenticate(b"labo@op1.test", Script())).login == "labo-app"
    assert (await conn.authenticate(None, Script(b""))).login == "labo-app"
    with pytest.raises(AuthenticationFailed):
        await conn.authenticate(b"jeanne.dupont@op1.test", Script())
    with pytest.raises(AuthenticationFailed):
        await mech.for_connection(other.der).authenticate(b"", Script())
    with pytest.raises(AuthenticationFailed):
        await mech.for_connection(None).authenticate(b"", Script())
    expired = ca.issue_client("perime.test", ou="26750045200011", expired=True)
    mech2 = ExternalMechanism({expired.subject_dn: "labo-app"}, storage.accounts)
    with pytest.raises(AuthenticationFailed):
        await mech2.for_connection(expired.der).authenticate(b"", Script())


def test_b64_helper_roundtrip() -> None:
    # the front-ends base64 the exchange; our mechanisms see raw bytes only
    assert base64.b64decode(base64.b64encode(RFC7628_41)) == RFC7628_41


def test_parsers_only_raise_domain_errors_on_random_input() -> None:
    import random

    rng = random.Random(7628)
    alphabet = b"n,ya=p\x01authBearer xyz=2C3D\x00\xff\r\n"
    for _ in range(3000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for parse in (parse_oauthbearer, parse_xoauth2):
            try:
                creds = parse(data)
            except (InvalidInput, AuthenticationFailed):
                continue
            # anything accepted has a well-formed bearer token and no control characters
            assert creds.token and "\x01" not in creds.token and " " not in creds.token
