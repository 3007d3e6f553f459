"""The SASL mechanisms an operator node offers, from its ``[auth]`` configuration.

``sasl_mechanisms(cfg, accounts)`` is what the composition root passes to the IMAP and SMTP
submission servers: OAUTHBEARER and XOAUTH2 when an OpenID Connect issuer is configured
(Ref#2 ECO.1.2.1), PLAIN unless ``auth.password_login = false``. EXTERNAL depends on each
connection's client certificate: ``external_mechanism`` gives the configured one, which a
front-end binds per connection (``for_connection(peer_cert_der)``).
"""

from __future__ import annotations

from typing import Protocol

from caducee.auth.sasl_mechs import (
    ExternalMechanism,
    OAuthBearerMechanism,
    SaslAccounts,
    XOAuth2Mechanism,
)
from caducee.auth.tokens import TokenValidator
from caducee.config.model import NodeConfig
from caducee.smtp.sasl import Authenticator, PlainMechanism, SaslMechanism

__all__ = ["external_mechanism", "sasl_mechanisms", "token_validator"]


class _Accounts(SaslAccounts, Authenticator, Protocol):
    """An ``AccountStore`` seen by the mechanisms (it satisfies both protocols)."""


def token_validator(cfg: NodeConfig) -> TokenValidator | None:
    """The node's validator for bearer tokens, or None without ``auth.oidc_issuer``."""
    auth = cfg.auth
    if not auth.oidc_issuer or not auth.audience:
        return None
    return TokenValidator(
        auth.oidc_issuer,
        audience=auth.audience,
        jwks_url=auth.jwks_url,
        verify=str(auth.ca_file) if auth.ca_file else True,
        leeway=auth.leeway_seconds,
    )


def sasl_mechanisms(cfg: NodeConfig, accounts: _Accounts) -> list[SaslMechanism]:
    """In preference order: OAUTHBEARER, XOAUTH2 (with an issuer), PLAIN (unless disabled)."""
    mechs: list[SaslMechanism] = []
    validator = token_validator(cfg)
    if validator is not None:
        mechs.append(OAuthBearerMechanism(validator, accounts))
        mechs.append(XOAuth2Mechanism(validator, accounts))
    if cfg.auth.password_login:
        mechs.append(PlainMechanism(accounts))
    return mechs


def external_mechanism(cfg: NodeConfig, accounts: SaslAccounts) -> ExternalMechanism | None:
    """SASL EXTERNAL for the configured certificate logins, or None when there are none."""
    if not cfg.auth.certificate_logins:
        return None
    return ExternalMechanism(cfg.auth.certificate_logins, accounts)
