"""Caducée: secure health messaging in the MSSanté model."""

__all__ = ["__version__"]

__version__ = "0.1.0"
