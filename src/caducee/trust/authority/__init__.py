"""The trust authority node (issue 4): PKI, onboarding, revocation, publication, OCSP."""

from caducee.trust.authority.ca import LIST_NAME, Authority, CertKind, new_key_and_csr

__all__ = ["LIST_NAME", "Authority", "CertKind", "new_key_and_csr"]
