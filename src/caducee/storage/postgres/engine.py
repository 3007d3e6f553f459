"""The PostgreSQL ``Storage`` (in progress)."""

from __future__ import annotations

from caducee.core.errors import StorageError
from caducee.storage.keyring import Keyring
from caducee.storage.passwords import PasswordHasher

__all__ = ["PostgresStorage"]


class PostgresStorage:
    def __init__(
        self,
        dsn: str,
        keyring: Keyring,
        *,
        node: str = "",
        pool_size: int = 10,
        password: str | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        raise StorageError("the PostgreSQL engine is not available yet")

    async def open(self) -> None: ...

    async def migrate(self) -> None: ...

    async def close(self) -> None: ...
