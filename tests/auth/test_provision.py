"""Sandbox provisioning of the IdP is idempotent and returns the secrets it made."""

from __future__ import annotations

from pathlib import Path

from caducee.auth.idp.provision import ClientSpec, UserSpec, provision
from caducee.auth.idp.store import IdpStore
from caducee.auth.totp import totp, verify_totp


def test_provision_twice(tmp_path: Path) -> None:
    store = IdpStore(tmp_path / "idp")
    users = [
        UserSpec("inf", "810001111111", password="infirmiere-demo-1", given_name="Inès"),
        UserSpec("derm", "810002222222", password="dermato-demo-2", totp=False),
        UserSpec("carte", "810003333333", cert_subject="CN=810003333333/Carte,OU=CPS,C=FR"),
    ]
    clients = [
        ClientSpec("webmail-op1", ("op1",), ("https://127.0.0.1:8443/auth/callback",), True),
        ClientSpec("lps", ("op1", "op2"), ("http://127.0.0.1:8765/callback",)),
    ]
    first = provision(store, users, clients)
    assert set(first.totp_secrets) == {"inf"}
    assert set(first.client_secrets) == {"webmail-op1"}
    secret = first.totp_secrets["inf"]
    stored = store.totp_secret(store.get_user(username="inf").user_id)  # type: ignore[union-attr]
    assert stored is not None and stored[0] == secret
    assert verify_totp(secret, totp(secret)) is not None
    again = provision(store, users, clients)
    assert again.totp_secrets == {} and again.client_secrets == {}
    assert [u.username for u in store.list_users()] == ["carte", "derm", "inf"]
    lps = store.get_client("lps")
    assert lps is not None and lps.audience == ("op1", "op2") and lps.secret_hash is None
    store.close()
