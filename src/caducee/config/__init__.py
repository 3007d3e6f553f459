"""Typed node configuration (one TOML file per node)."""

from caducee.config.model import NodeConfig, load_config

__all__ = ["NodeConfig", "load_config"]
