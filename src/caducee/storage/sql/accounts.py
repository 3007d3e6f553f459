"""Accounts, mailboxes (BALs) and delegations, on any engine (``AccountStore``).

Ownership is a delegation with every right; ``create_mailbox(owner=...)`` grants it. An
account whose login equals a mailbox address (case-insensitively) owns that mailbox too, so
the common "login = address" set-up needs no explicit grant. Rights are RFC 4314 letters.
"""

from __future__ import annotations

import asyncio
from typing import Any

from caducee.core.errors import Conflict, InvalidInput, NotFound
from caducee.core.model import Account, Address, Mailbox, MailboxType
from caducee.storage.interfaces import DEFAULT_FOLDERS
from caducee.storage.passwords import PasswordHasher
from caducee.storage.sql.base import Op, Q, Row, Runner, now_us
from caducee.storage.sql.folders import create_folder_op
from caducee.storage.sql.messages import gc_blobs

__all__ = ["ALL_RIGHTS", "SqlAccountStore"]

ALL_RIGHTS = "lrswipkxtea"
_VALID_RIGHTS = set(ALL_RIGHTS) | {"c", "d"}

_ACCOUNT_COLS = "account_id, login, display_name, idnps, disabled"
_MAILBOX_COLS = "mailbox_id, address, type, holder_id, display_name, quota_bytes, used_bytes"


def _bump_epoch() -> Op[None]:
    """Raises the ACL epoch, in the transaction of a change to accounts, BALs or rights."""
    yield Q("UPDATE acl_epoch SET epoch = epoch + 1 WHERE id = 1")


def _acl_epoch() -> Op[int]:
    rows = yield Q("SELECT epoch FROM acl_epoch WHERE id = 1", only=True)
    return int(rows[0][0]) if rows else 0


def _account(row: Row) -> Account:
    return Account(int(row[0]), row[1], row[2], row[3], bool(row[4]))


def _mailbox(row: Row) -> Mailbox:
    return Mailbox(
        int(row[0]), row[1], MailboxType(row[2]), row[3], row[4], int(row[5]), int(row[6])
    )


def _norm_rights(rights: str) -> str:
    bad = set(rights) - _VALID_RIGHTS
    if bad:
        raise InvalidInput(f"unknown ACL rights {''.join(sorted(bad))!r} (RFC 4314)")
    return "".join(c for c in ALL_RIGHTS if c in rights)


def _create_account(
    login: str, pw_hash: str | None, display_name: str, idnps: str | None
) -> Op[Account]:
    key = login.lower()
    rows = yield Q("SELECT 1 FROM accounts WHERE login_key = ?", (key,))
    if rows:
        raise Conflict(f"account {login!r} already exists")
    rows = yield Q(
        "INSERT INTO accounts (login, login_key, display_name, idnps, password_hash, created)"
        f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {_ACCOUNT_COLS}",
        (login, key, display_name, idnps, pw_hash, now_us()),
    )
    yield from _bump_epoch()
    return _account(rows[0])


def _get_account(login: str) -> Op[Account | None]:
    rows = yield Q(
        f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE login_key = ?", (login.lower(),), only=True
    )
    return _account(rows[0]) if rows else None


def _get_account_by_idnps(idnps: str) -> Op[Account | None]:
    rows = yield Q(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE idnps = ?", (idnps,))
    return _account(rows[0]) if rows else None


def _account_secret(login: str) -> Op[tuple[Account, str | None] | None]:
    rows = yield Q(
        f"SELECT {_ACCOUNT_COLS}, password_hash FROM accounts WHERE login_key = ?",
        (login.lower(),),
        only=True,
    )
    return (_account(rows[0]), rows[0][5]) if rows else None


def _list_accounts() -> Op[list[Account]]:
    rows = yield Q(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY login_key", only=True)
    return [_account(r) for r in rows]


def _set_password(login: str, pw_hash: str) -> Op[None]:
    rows = yield Q(
        "UPDATE accounts SET password_hash = ? WHERE login_key = ? RETURNING account_id",
        (pw_hash, login.lower()),
        only=True,
    )
    if not rows:
        raise NotFound(f"no account {login!r}")


def _set_disabled(login: str, disabled: bool) -> Op[None]:
    rows = yield Q(
        "UPDATE accounts SET disabled = ? WHERE login_key = ? RETURNING account_id",
        (1 if disabled else 0, login.lower()),
        only=True,
    )
    if not rows:
        raise NotFound(f"no account {login!r}")


def _delete_account(login: str) -> Op[None]:
    rows = yield Q(
        "DELETE FROM accounts WHERE login_key = ? RETURNING account_id", (login.lower(),)
    )
    if not rows:
        raise NotFound(f"no account {login!r}")
    yield from _bump_epoch()


def _create_mailbox(
    address: Address,
    type: MailboxType,
    holder_id: str,
    display_name: str,
    quota_bytes: int,
    owner: str | None,
) -> Op[Mailbox]:
    rows = yield Q("SELECT 1 FROM mailboxes WHERE address_key = ?", (address.key,))
    if rows:
        raise Conflict(f"mailbox {address} already exists")
    owner_id: int | None = None
    if owner is not None:
        rows = yield Q("SELECT account_id FROM accounts WHERE login_key = ?", (owner.lower(),))
        if not rows:
            raise NotFound(f"no account {owner!r}")
        owner_id = int(rows[0][0])
    rows = yield Q(
        "INSERT INTO mailboxes (address, address_key, domain, type, holder_id, display_name,"
        " quota_bytes, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        f" RETURNING {_MAILBOX_COLS}",
        (
            str(address),
            address.key,
            address.domain,
            type.value,
            holder_id,
            display_name,
            quota_bytes,
            now_us(),
        ),
    )
    mbox = _mailbox(rows[0])
    for name, special in DEFAULT_FOLDERS:
        yield from create_folder_op(mbox.mailbox_id, name, special)
    if owner_id is not None:
        yield Q(
            "INSERT INTO delegations (account_id, mailbox_id, rights) VALUES (?, ?, ?)",
            (owner_id, mbox.mailbox_id, ALL_RIGHTS),
        )
    yield from _bump_epoch()
    return mbox


def _get_mailbox(where: str, arg: Any) -> Op[Mailbox | None]:
    rows = yield Q(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE {where} = ?", (arg,), only=True)
    return _mailbox(rows[0]) if rows else None


def _list_mailboxes(domain: str | None) -> Op[list[Mailbox]]:
    if domain is None:
        rows = yield Q(f"SELECT {_MAILBOX_COLS} FROM mailboxes ORDER BY address_key", only=True)
    else:
        rows = yield Q(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE domain = ? ORDER BY address_key",
            (domain.lower().rstrip("."),),
            only=True,
        )
    return [_mailbox(r) for r in rows]


def _delete_mailbox(address: Address) -> Op[list[str]]:
    rows = yield Q("SELECT mailbox_id FROM mailboxes WHERE address_key = ?", (address.key,))
    if not rows:
        raise NotFound(f"no mailbox {address}")
    mailbox_id = int(rows[0][0])
    blobs = yield Q("SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    yield Q("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    yield Q("DELETE FROM mailboxes WHERE mailbox_id = ?", (mailbox_id,))
    yield from _bump_epoch()
    return (yield from gc_blobs([r[0] for r in blobs]))


def _grant(login: str, address: Address, rights: str | None) -> Op[None]:
    rows = yield Q("SELECT account_id FROM accounts WHERE login_key = ?", (login.lower(),))
    if not rows:
        raise NotFound(f"no account {login!r}")
    account_id = int(rows[0][0])
    rows = yield Q("SELECT mailbox_id FROM mailboxes WHERE address_key = ?", (address.key,))
    if not rows:
        raise NotFound(f"no mailbox {address}")
    mailbox_id = int(rows[0][0])
    yield Q(
        "DELETE FROM delegations WHERE account_id = ? AND mailbox_id = ?",
        (account_id, mailbox_id),
    )
    if rights:
        yield Q(
            "INSERT INTO delegations (account_id, mailbox_id, rights) VALUES (?, ?, ?)",
            (account_id, mailbox_id, rights),
        )
    yield from _bump_epoch()


def _mailboxes_of(login: str) -> Op[list[tuple[Mailbox, str]]]:
    key = login.lower()
    rows = yield Q(
        f"SELECT {', '.join('m.' + c.strip() for c in _MAILBOX_COLS.split(','))}, d.rights"
        " FROM delegations d JOIN accounts a ON a.account_id = d.account_id"
        " JOIN mailboxes m ON m.mailbox_id = d.mailbox_id WHERE a.login_key = ?",
        (key,),
    )
    found: dict[int, tuple[Mailbox, str]] = {int(r[0]): (_mailbox(r), r[7]) for r in rows}
    own = yield Q(
        f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE address_key = ? AND EXISTS"
        " (SELECT 1 FROM accounts WHERE login_key = ?)",
        (key, key),
    )
    for r in own:
        found[int(r[0])] = (_mailbox(r), ALL_RIGHTS)
    return sorted(found.values(), key=lambda mr: mr[0].address.lower())


def _rights(login: str, mailbox_id: int) -> Op[str]:
    key = login.lower()
    rows = yield Q(
        "SELECT d.rights FROM delegations d JOIN accounts a ON a.account_id = d.account_id"
        " WHERE a.login_key = ? AND d.mailbox_id = ?",
        (key, mailbox_id),
    )
    if rows:
        return str(rows[0][0])
    own = yield Q(
        "SELECT 1 FROM mailboxes m, accounts a WHERE m.mailbox_id = ? AND m.address_key = ?"
        " AND a.login_key = ?",
        (mailbox_id, key, key),
    )
    return ALL_RIGHTS if own else ""


def _acl(mailbox_id: int) -> Op[list[tuple[str, str]]]:
    rows = yield Q(
        "SELECT a.login, d.rights FROM delegations d JOIN accounts a"
        " ON a.account_id = d.account_id WHERE d.mailbox_id = ? ORDER BY a.login_key",
        (mailbox_id,),
        only=True,
    )
    return [(r[0], r[1]) for r in rows]


class SqlAccountStore:
    """``AccountStore`` over a ``Runner``; passwords hashed with scrypt off the event loop."""

    def __init__(self, runner: Runner, hasher: PasswordHasher, on_blobs_freed: Any) -> None:
        self._run = runner
        self._hasher = hasher
        self._freed = on_blobs_freed
        # Checks in progress, keyed like the cache: concurrent logins with the same
        # credentials (a client opening several sessions at once) share one scrypt.
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}

    async def create_account(
        self, login: str, password: str | None, *, display_name: str = "", idnps: str | None = None
    ) -> Account:
        if not login or any(c.isspace() for c in login) or len(login) > 320:
            raise InvalidInput("login must be 1-320 characters without spaces")
        pw_hash = None if password is None else await asyncio.to_thread(self._hasher.hash, password)
        return await self._run.write(lambda: _create_account(login, pw_hash, display_name, idnps))

    async def get_account(self, login: str) -> Account | None:
        return await self._run.read(lambda: _get_account(login))

    async def get_account_by_idnps(self, idnps: str) -> Account | None:
        return await self._run.read(lambda: _get_account_by_idnps(idnps))

    async def list_accounts(self) -> list[Account]:
        return await self._run.read(_list_accounts)

    async def set_password(self, login: str, password: str) -> None:
        pw_hash = await asyncio.to_thread(self._hasher.hash, password)
        await self._run.write(lambda: _set_password(login, pw_hash))

    async def set_disabled(self, login: str, disabled: bool) -> None:
        await self._run.write(lambda: _set_disabled(login, disabled))

    async def verify_password(self, login: str, password: str) -> Account | None:
        found = await self._run.read(lambda: _account_secret(login))
        if found is None or found[1] is None or found[0].disabled:
            # Same cost as a wrong password, so logins cannot be enumerated by timing.
            await asyncio.to_thread(self._hasher.verify, "", _DUMMY_HASH, password)
            return None
        account, stored = found[0], found[1]
        if self._hasher.cached(login.lower(), stored, password):
            return account
        key = self._hasher.cache_key(login.lower(), stored, password)
        check = self._inflight.get(key)
        if check is None:
            check = asyncio.ensure_future(
                asyncio.to_thread(self._hasher.verify, login.lower(), stored, password)
            )
            self._inflight[key] = check
            check.add_done_callback(lambda _: self._inflight.pop(key, None))
        ok = await asyncio.shield(check)
        return account if ok else None

    async def delete_account(self, login: str) -> None:
        await self._run.write(lambda: _delete_account(login))

    async def create_mailbox(
        self,
        address: str,
        type: MailboxType,
        holder_id: str,
        *,
        display_name: str = "",
        quota_bytes: int = 0,
        owner: str | None = None,
    ) -> Mailbox:
        addr = Address.parse(address)
        if quota_bytes < 0:
            raise InvalidInput("quota_bytes must be >= 0")
        return await self._run.write(
            lambda: _create_mailbox(
                addr, MailboxType(type), holder_id, display_name, quota_bytes, owner
            )
        )

    async def get_mailbox(self, address: str) -> Mailbox | None:
        try:
            key = Address.parse(address).key
        except InvalidInput:
            return None
        return await self._run.read(lambda: _get_mailbox("address_key", key))

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        return await self._run.read(lambda: _get_mailbox("mailbox_id", mailbox_id))

    async def list_mailboxes(self, domain: str | None = None) -> list[Mailbox]:
        return await self._run.read(lambda: _list_mailboxes(domain))

    async def delete_mailbox(self, address: str) -> None:
        addr = Address.parse(address)
        freed = await self._run.write(lambda: _delete_mailbox(addr))
        await self._freed(freed)

    async def grant(self, login: str, address: str, rights: str) -> None:
        addr = Address.parse(address)
        norm = _norm_rights(rights)
        await self._run.write(lambda: _grant(login, addr, norm))

    async def revoke(self, login: str, address: str) -> None:
        addr = Address.parse(address)
        await self._run.write(lambda: _grant(login, addr, None))

    async def mailboxes_of(self, login: str) -> list[tuple[Mailbox, str]]:
        return await self._run.read(lambda: _mailboxes_of(login))

    async def acl_epoch(self) -> int:
        return await self._run.read(_acl_epoch)

    async def rights(self, login: str, mailbox_id: int) -> str:
        return await self._run.read(lambda: _rights(login, mailbox_id))

    async def acl(self, mailbox_id: int) -> list[tuple[str, str]]:
        """Explicit (login, rights) entries of the BAL (RFC 4314 GETACL)."""
        return await self._run.read(lambda: _acl(mailbox_id))


_DUMMY_HASH = "scrypt$14$8$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
