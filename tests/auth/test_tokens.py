"""TokenValidator against tokens of the running IdP and forged ones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from caducee.auth.tokens import TokenValidator
from caducee.core.errors import AuthenticationFailed
from caducee.core.model import Account

from .conftest import AUDIENCE, IDNPS, RunningIdp, exchange, login_and_get_code, pkce


class MemoryAccounts:
    """Stand-in for the AccountStore (only ``get_account_by_idnps`` is used here); the
    storage engines' version of the method is covered by the storage contract suite."""

    def __init__(self, *accounts: Account) -> None:
        self.by_idnps = {a.idnps: a for a in accounts if a.idnps}

    async def get_account_by_idnps(self, idnps: str) -> Account | None:
        return self.by_idnps.get(idnps)


@pytest.fixture
async def access_token(idp: RunningIdp) -> AsyncIterator[str]:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
    yield tok["access_token"]


def validator(idp: RunningIdp, **kw: Any) -> TokenValidator:
    return TokenValidator(
        idp.base,
        audience=kw.pop("audience", AUDIENCE),
        jwks_url=f"{idp.base}/jwks",
        verify=idp.client_ctx(),
        **kw,
    )


def _forge(key: Any, claims: dict[str, Any], alg: str = "ES256") -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims, key, [alg])


def _claims(idp: RunningIdp, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {
        "iss": idp.base,
        "aud": [AUDIENCE],
        "sub": "x",
        "exp": now + 300,
        "iat": now,
        "SubjectNameID": IDNPS,
    }
    c.update(over)
    return c


async def test_valid_token_maps_to_account(idp: RunningIdp, access_token: str) -> None:
    v = validator(idp)
    checked = await v.validate(access_token)
    assert checked.idnps == IDNPS and checked.client_id == "lps"
    assert "scope_all" in checked.scope
    acc = Account(7, "jdupont", idnps=IDNPS)
    assert await v.authenticate(access_token, MemoryAccounts(acc)) == acc
    with pytest.raises(AuthenticationFailed, match="no account"):
        await v.authenticate(access_token, MemoryAccounts())
    disabled = Account(7, "jdupont", idnps=IDNPS, disabled=True)
    with pytest.raises(AuthenticationFailed):
        await v.authenticate(access_token, MemoryAccounts(disabled))
    # one JWKS fetch serves many validations
    await v.validate(access_token)
    assert v.fetch_count == 1


async def test_discovery_builds_a_validator(idp: RunningIdp, access_token: str) -> None:
    v = await TokenValidator.from_discovery(idp.base, audience=AUDIENCE, verify=idp.client_ctx())
    assert (await v.validate(access_token)).idnps == IDNPS


async def test_wrong_audience_issuer(idp: RunningIdp, access_token: str) -> None:
    with pytest.raises(AuthenticationFailed, match="aud"):
        await validator(idp, audience="another-operator").validate(access_token)
    other_iss = TokenValidator(
        "https://other.example", audience=AUDIENCE, jwks=idp.server.keys.public_jwks()
    )
    with pytest.raises(AuthenticationFailed, match="iss"):
        await other_iss.validate(access_token)


async def test_tampered_signature_and_payload(idp: RunningIdp, access_token: str) -> None:
    v = validator(idp)
    head, payload, sig = access_token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(AuthenticationFailed, match="signature"):
        await v.validate(f"{head}.{payload}.{flipped}")
    import base64
    import json

    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw["SubjectNameID"] = "810009999999"
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationFailed, match="signature"):
        await v.validate(f"{head}.{forged}.{sig}")


async def test_token_signed_by_an_attacker_key_with_a_known_kid(idp: RunningIdp) -> None:
    attacker = ECKey.generate_key("P-256", {"kid": str(idp.server.keys.current.kid)}, private=True)
    token = _forge(attacker, _claims(idp))
    with pytest.raises(AuthenticationFailed, match="signature"):
        await validator(idp).validate(token)


async def test_unknown_kid_refetches_once_then_fails(idp: RunningIdp) -> None:
    v = validator(idp, refresh_interval=60.0)
    attacker = ECKey.generate_key("P-256", {"kid": "nope"}, private=True)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="unknown key"):
            await v.validate(_forge(attacker, _claims(idp)))
    assert v.fetch_count == 1  # random kids cannot make us hammer the IdP


async def test_key_rotation_is_picked_up(idp: RunningIdp, access_token: str) -> None:
    v = validator(idp, refresh_interval=0.0)
    await v.validate(access_token)
    new_kid = idp.server.keys.rotate()
    token = _forge(idp.server.keys.current, _claims(idp))
    assert jwt.decode(token, idp.server.keys.public_keyset()).header["kid"] == new_kid
    assert (await v.validate(token)).idnps == IDNPS
    assert v.fetch_count == 2
    assert (await v.validate(access_token)).idnps == IDNPS  # old key still published


async def test_expiry_with_leeway(idp: RunningIdp) -> None:
    key = idp.server.keys.current
    now = int(time.time())
    v = validator(idp, leeway=30)
    assert await v.validate(_forge(key, _claims(idp, exp=now - 10)))
    with pytest.raises(AuthenticationFailed, match="exp"):
        await v.validate(_forge(key, _claims(idp, exp=now - 60)))
    with pytest.raises(AuthenticationFailed, match="nbf"):
        await v.validate(_forge(key, _claims(idp, nbf=now + 120)))


async def test_algorithm_confusion_and_garbage(idp: RunningIdp) -> None:
    v = validator(idp)
    rsa = RSAKey.generate_key(2048, {"kid": "rsa"}, private=True)
    for bad in ("", "abc", "a.b", "a.b.c", "x" * 20000):
        with pytest.raises(AuthenticationFailed):
            await v.validate(bad)
    # "none" and HMAC are never accepted
    import base64
    import json

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    kid = str(idp.server.keys.current.kid)
    with pytest.raises(AuthenticationFailed, match="algorithm"):
        await v.validate(f"{b64({'alg': 'none', 'kid': kid})}.{b64(_claims(idp))}.")
    with pytest.raises(AuthenticationFailed, match="algorithm"):
        await v.validate(f"{b64({'alg': 'HS256', 'kid': kid})}.{b64(_claims(idp))}.c2ln")
    with pytest.raises(AuthenticationFailed, match="unknown key"):
        await v.validate(_forge(rsa, _claims(idp), alg="RS256"))


async def test_token_without_idnps(idp: RunningIdp) -> None:
    claims = _claims(idp)
    del claims["SubjectNameID"]
    token = _forge(idp.server.keys.current, claims)
    with pytest.raises(AuthenticationFailed, match="IDNPS"):
        await validator(idp).authenticate(token, MemoryAccounts())


async def test_id_token_is_not_an_access_token(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
    # the ID token's audience is the client: an operator named like it must still refuse it
    with pytest.raises(AuthenticationFailed, match="not an access token"):
        await validator(idp, audience="lps").validate(tok["id_token"])
    keycloak_id = _forge(idp.server.keys.current, _claims(idp, typ="ID"))
    with pytest.raises(AuthenticationFailed, match="not an access token"):
        await validator(idp).validate(keycloak_id)
    keycloak_access = _forge(idp.server.keys.current, _claims(idp, typ="Bearer"))
    assert (await validator(idp).validate(keycloak_access)).idnps == IDNPS


async def test_hostile_headers(idp: RunningIdp) -> None:
    import base64

    v = validator(idp)
    deep = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    for header in (deep, "e30", "bnVsbA", "eyJ0eXAiOjF9"):  # nesting, {}, null, {"typ":1}
        with pytest.raises(AuthenticationFailed):
            await v.validate(f"{header}.e30.c2ln")


async def test_rs256_tokens_as_pro_sante_connect_signs_them() -> None:
    """Keycloak (hence PSC) signs RS256 with a "typ": "Bearer" claim; a static JWKS works."""
    rsa = RSAKey.generate_key(2048, {"kid": "psc-1", "alg": "RS256", "use": "sig"}, private=True)
    issuer = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
    v = TokenValidator(issuer, audience="op1", jwks={"keys": [rsa.as_dict(private=False)]})
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": "op1",
        "sub": "f:550e8400:899700218896",
        "exp": now + 120,
        "typ": "Bearer",
        "preferred_username": "899700218896",
    }
    token = jwt.encode({"alg": "RS256", "kid": "psc-1", "typ": "JWT"}, claims, rsa, ["RS256"])
    checked = await v.validate(token)
    assert checked.idnps == "899700218896"  # from preferred_username when no SubjectNameID
    assert v.fetch_count == 0


async def test_rotation_from_another_process_is_picked_up(idp: RunningIdp) -> None:
    from caducee.auth.idp.keys import SigningKeys

    before = idp.server.keys.current.kid
    new_kid = SigningKeys(idp.server.data_dir / "signing-keys.json").rotate()  # e.g. the CLI
    async with idp.http() as c:
        kids = [k["kid"] for k in (await c.get("/jwks")).json()["keys"]]
    assert kids[-1] == new_kid and before in kids
    assert idp.server.keys.current.kid == new_kid
