"""Fixtures of the SMTP tests live in ``smtp_harness`` (also loaded by tests/security)."""

from smtp_harness import node, pki

__all__ = ["node", "pki"]
