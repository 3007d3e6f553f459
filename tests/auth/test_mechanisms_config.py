"""The ``[auth]`` section of a node's TOML and the mechanisms built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from caducee.auth.mechanisms import external_mechanism, sasl_mechanisms, token_validator
from caducee.config.model import load_config
from caducee.core.errors import ConfigError
from caducee.storage import open_sqlite
from caducee.storage.keyring import create_keyring

from .conftest import AUDIENCE, IDNPS, RunningIdp, exchange, login_and_get_code, pkce

BASE = """
name = "op1"
data_dir = "data"
domains = ["op1.test"]
[crypto]
keyring_file = "keyring"
[tls]
cert_file = "c.pem"
key_file = "k.pem"
ca_bundle = "ca.pem"
[trust]
liste_blanche = "liste.xml"
[smtp]
hostname = "mx.op1.test"
"""


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def test_default_is_password_only(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""))
    assert token_validator(cfg) is None
    assert [m.name for m in sasl_mechanisms(cfg, None)] == ["PLAIN"]  # type: ignore[arg-type]
    assert external_mechanism(cfg, None) is None  # type: ignore[arg-type]


def test_auth_section_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audience"):
        load_config(_write(tmp_path, '[auth]\noidc_issuer = "https://idp.test"\n'))
    with pytest.raises(ConfigError, match="https"):
        load_config(_write(tmp_path, '[auth]\noidc_issuer = "http://idp.test"\naudience = "op1"\n'))
    with pytest.raises(ConfigError, match="unknown"):
        load_config(_write(tmp_path, "[auth]\nunknown = 1\n"))


async def test_tokens_only_node_with_discovery(idp: RunningIdp, tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            f'[auth]\noidc_issuer = "{idp.base}"\naudience = "{AUDIENCE}"\n'
            f'ca_file = "{idp.pki.ca_file}"\npassword_login = false\n'
            '[auth.certificate_logins]\n"CN=automate.labo.test,OU=26750045200011,O=LABO,C=FR" '
            '= "labo-app"\n',
        )
    )
    assert cfg.auth.ca_file == idp.pki.ca_file
    create_keyring(tmp_path / "keyring")
    storage = await open_sqlite(tmp_path / "data", tmp_path / "keyring")
    try:
        await storage.accounts.create_account("jdupont", None, idnps=IDNPS)
        mechs = sasl_mechanisms(cfg, storage.accounts)
        assert [m.name for m in mechs] == ["OAUTHBEARER", "XOAUTH2"]
        assert external_mechanism(cfg, storage.accounts) is not None
        verifier, challenge = pkce()
        async with idp.http() as c:
            tok = (await exchange(c, await login_and_get_code(idp, c, challenge), verifier)).json()
        validator = token_validator(cfg)
        assert validator is not None and validator.jwks_url is None
        # the JWKS URL comes from the discovery document on first use
        account = await validator.authenticate(tok["access_token"], storage.accounts)
        assert account.login == "jdupont"
        assert validator.jwks_url == f"{idp.base}/jwks"
    finally:
        await storage.close()
