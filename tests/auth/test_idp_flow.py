"""The authorization code + PKCE flow against a running IdP, over real HTTPS."""

from __future__ import annotations

import time

from joserfc import jwt
from joserfc.jwk import KeySet

from caducee.auth.totp import totp

from .conftest import (
    AUDIENCE,
    IDNPS,
    RunningIdp,
    authorize_query,
    exchange,
    login_and_get_code,
    pkce,
)


async def test_discovery_document(idp: RunningIdp) -> None:
    async with idp.http() as c:
        doc = (await c.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == idp.base
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["jwks_uri"] == f"{idp.base}/jwks"
    assert doc["token_endpoint"] == f"{idp.base}/token"


async def test_full_code_flow_with_pkce(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        code = await login_and_get_code(idp, c, challenge)
        resp = await exchange(c, code, verifier)
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "no-store"
        tok = resp.json()
        jwks = (await c.get("/jwks")).json()
        userinfo = await c.get(
            "/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"}
        )
    assert tok["token_type"] == "Bearer"
    assert 0 < tok["expires_in"] <= 300
    assert tok["refresh_token"] and tok["id_token"]
    decoded = jwt.decode(tok["access_token"], KeySet.import_key_set(jwks), ["ES256"])
    claims = decoded.claims
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    assert claims["iss"] == idp.base
    assert claims["aud"] == [AUDIENCE]
    assert claims["SubjectNameID"] == IDNPS
    assert claims["exp"] - claims["iat"] == 300
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["sub"] != IDNPS  # sub is an opaque id, the IDNPS is a separate claim
    id_token = jwt.decode(tok["id_token"], KeySet.import_key_set(jwks), ["ES256"]).claims
    assert id_token["aud"] == ["lps"] and id_token["nonce"] == "n0nce"
    assert userinfo.status_code == 200
    assert userinfo.json()["SubjectNameID"] == IDNPS
    assert userinfo.json()["family_name"] == "DUPONT"


async def test_code_is_single_use_and_reuse_revokes_the_grant(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        code = await login_and_get_code(idp, c, challenge)
        first = await exchange(c, code, verifier)
        assert first.status_code == 200
        tok = first.json()
        again = await exchange(c, code, verifier)
        info = await c.get("/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"})
        refresh = await c.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tok["refresh_token"],
                "client_id": "lps",
            },
        )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked
    assert info.status_code == 401
    assert refresh.status_code == 400
    assert "idp.code.reused" in [e[1] for e in idp.server.store.audit_events()]


async def test_wrong_code_verifier_is_refused(idp: RunningIdp) -> None:
    _, challenge = pkce()
    other_verifier, _ = pkce()
    async with idp.http() as c:
        code = await login_and_get_code(idp, c, challenge)
        resp = await exchange(c, code, other_verifier)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


async def test_plain_pkce_and_missing_pkce_are_refused(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        plain = await c.get(
            f"/authorize?{authorize_query(verifier, code_challenge_method='plain')}"
        )
        q = authorize_query(challenge)
        missing = await c.get("/authorize?" + q.replace(f"code_challenge={challenge}", ""))
    for resp in (plain, missing):
        assert resp.status_code == 302
        assert "error=invalid_request" in resp.headers["location"]


async def test_unknown_redirect_uri_is_shown_not_followed(idp: RunningIdp) -> None:
    _, challenge = pkce()
    async with idp.http() as c:
        resp = await c.get(
            f"/authorize?{authorize_query(challenge, redirect_uri='https://evil.example/cb')}"
        )
    assert resp.status_code == 400
    assert "location" not in resp.headers
    assert "invalide" in resp.text


async def test_refresh_rotation_and_replay_revokes_the_grant(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
        r1 = tok["refresh_token"]
        resp = await c.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": r1, "client_id": "lps"}
        )
        assert resp.status_code == 200, resp.text
        tok2 = resp.json()
        r2 = tok2["refresh_token"]
        assert r2 != r1 and tok2["access_token"] != tok["access_token"]
        # replaying the rotated token is refused and revokes the whole grant
        replay = await c.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": r1, "client_id": "lps"}
        )
        assert replay.status_code == 400
        after = await c.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": r2, "client_id": "lps"}
        )
        assert after.status_code == 400
        info = await c.get("/userinfo", headers={"Authorization": f"Bearer {tok2['access_token']}"})
    assert info.status_code == 401
    kinds = [e[1] for e in idp.server.store.audit_events()]
    assert "idp.refresh.replay" in kinds


async def test_refresh_token_bound_to_its_client(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
        resp = await c.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
            auth=(AUDIENCE, idp.rs_secret),
        )
    assert resp.status_code in (400, 401), resp.text
    assert resp.json()["error"] in ("invalid_grant", "invalid_client"), resp.text


async def test_introspection_active_revoked_and_unauthenticated(idp: RunningIdp) -> None:
    verifier, challenge = pkce()
    async with idp.http() as c:
        tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
        at = tok["access_token"]
        no_auth = await c.post("/introspect", data={"token": at})
        active = await c.post("/introspect", data={"token": at}, auth=(AUDIENCE, idp.rs_secret))
        bad = await c.post("/introspect", data={"token": at}, auth=(AUDIENCE, "wrong"))
        revoked = await c.post("/revoke", data={"token": at, "client_id": "lps"})
        after = await c.post("/introspect", data={"token": at}, auth=(AUDIENCE, idp.rs_secret))
        refresh = await c.post(
            "/introspect", data={"token": tok["refresh_token"]}, auth=(AUDIENCE, idp.rs_secret)
        )
        garbage = await c.post(
            "/introspect", data={"token": "abc.def.ghi"}, auth=(AUDIENCE, idp.rs_secret)
        )
    assert no_auth.status_code == 401 and bad.status_code == 401
    body = active.json()
    assert body["active"] is True and body["SubjectNameID"] == IDNPS
    assert body["aud"] == [AUDIENCE] and body["exp"] > time.time()
    assert revoked.status_code == 200
    assert after.json() == {"active": False}
    # the refresh token was issued to "lps", not to the resource server
    assert refresh.json() == {"active": False}
    assert garbage.json() == {"active": False}


async def test_introspection_of_expired_token(tmp_path, pki) -> None:  # type: ignore[no-untyped-def]
    from .conftest import settings_for_tests, start_idp

    running = await start_idp(tmp_path, pki, settings_for_tests(access_token_lifetime=1))
    try:
        verifier, challenge = pkce()
        async with running.http() as c:
            tok = (
                await exchange(c, await login_and_get_code(running, c, challenge), verifier)
            ).json()
            assert tok["expires_in"] == 1
            claims = running.server.core.decode_access_token(tok["access_token"])  # type: ignore[union-attr]
            assert claims is not None
            deadline = time.monotonic() + 5
            while time.time() <= claims["exp"] and time.monotonic() < deadline:
                await __import__("asyncio").sleep(0.1)
            resp = await c.post(
                "/introspect",
                data={"token": tok["access_token"]},
                auth=(AUDIENCE, running.rs_secret),
            )
            info = await c.get(
                "/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"}
            )
        assert resp.json() == {"active": False}
        assert info.status_code == 401
    finally:
        await running.server.stop()


async def test_totp_code_cannot_be_replayed(idp: RunningIdp) -> None:
    _, challenge = pkce()
    code = totp(idp.totp_secret)
    async with idp.http() as c:
        await login_and_get_code(idp, c, challenge, code=code)
    async with idp.http() as c2:
        q = authorize_query(challenge)
        page = await c2.get(f"/authorize?{q}")
        from .conftest import PASSWORD, csrf_of

        resp = await c2.post(
            "/login/password",
            data={
                "csrf": csrf_of(page.text),
                "query": q,
                "username": "jdupont",
                "password": PASSWORD,
                "totp": code,
            },
        )
    assert resp.status_code == 401
    assert "incorrect" in resp.text
