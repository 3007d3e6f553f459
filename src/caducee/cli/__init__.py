"""Command-line front-end: one module per command group, each with ``register(subparsers)``."""
