"""The directory storage interface, implemented for SQLite and PostgreSQL.

The importer writes through :class:`ImportSession` (one transaction: everything or nothing);
the FHIR API and the CLI read through the search and fetch methods; operators' mailbox
publication goes through the mailbox methods. Both engines run the same contract suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from caducee.directory.model import Activity, Mailbox, Organization, Person

__all__ = [
    "DirectoryStore",
    "ImportSession",
    "MailboxMatch",
    "OrgQuery",
    "PersonQuery",
    "RoleQuery",
]

MailboxMatch = Literal["start", "contains", "exact"]


@dataclass(frozen=True, slots=True)
class PersonQuery:
    """Practitioner search (Annuaire Santé FHIR v2 parameters, notes §6.4)."""

    text: str = ""  # name words, each a prefix; typos tolerated when nothing matches
    family: str = ""
    given: str = ""
    identifiers: tuple[str, ...] = ()  # IDNPS values
    id_types: tuple[str, ...] = ()  # "8" RPPS, "0" ADELI (any of); empty: every person
    professions: tuple[str, ...] = ()  # TRE_G15 codes (any of)
    specialties: tuple[str, ...] = ()  # savoir-faire codes (any of)
    postal_code: str = ""  # prefix: "75" is a department
    city: str = ""
    finess: str = ""
    mailbox: str = ""
    mailbox_match: MailboxMatch = "start"
    mailbox_type: str = ""  # PER, ORG, APP, CAB: holders of such a (public) mailbox
    updated_since: str = ""
    fuzzy: bool = True


@dataclass(frozen=True, slots=True)
class OrgQuery:
    text: str = ""
    name_contains: str = ""
    identifiers: tuple[str, ...] = ()  # IDNST, FINESS or SIRET values
    # holders of an identifier of these kinds (any of): finess, finess_ej, siret, siren
    id_kinds: tuple[str, ...] = ()
    postal_code: str = ""
    city: str = ""
    sectors: tuple[str, ...] = ()
    mailbox: str = ""
    mailbox_match: MailboxMatch = "start"
    mailbox_type: str = ""
    updated_since: str = ""


@dataclass(frozen=True, slots=True)
class RoleQuery:
    ids: tuple[str, ...] = ()
    practitioners: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # mode d'exercice or profession codes
    mailbox: str = ""
    mailbox_match: MailboxMatch = "start"
    mailbox_type: str = ""
    updated_since: str = ""


class ImportSession(Protocol):
    """Writes of one import, applied in one transaction by :meth:`DirectoryStore.importing`."""

    def delete_persons(self, idnps: Sequence[str]) -> None: ...
    def insert_persons(self, rows: Iterable[tuple[object, ...]]) -> None: ...
    def insert_activities(self, rows: Iterable[tuple[object, ...]]) -> None: ...
    def upsert_orgs(
        self, rows: Sequence[tuple[object, ...]], *, only_new: bool = False
    ) -> None: ...
    def delete_mailboxes(self, addresses: Sequence[str], *, source: str | None = None) -> None: ...
    def insert_mailboxes(self, rows: Iterable[tuple[object, ...]]) -> None: ...
    def prune_orgs(self) -> int: ...
    def upgrade_search(self) -> int:
        """Bring every person search document to the current version (``rows.upgrade_doc``)
        and record it in ``meta``; returns the number of documents rewritten."""
        ...


class DirectoryStore(Protocol):
    """Storage of the national directory."""

    engine: str

    def close(self) -> None: ...
    def counts(self) -> dict[str, int]: ...
    def person_hashes(self) -> dict[str, int]: ...
    def mailbox_hashes(self) -> dict[str, int]: ...
    def operator_addresses(self) -> set[str]: ...
    def generation(self) -> int: ...
    def search_version(self) -> int: ...
    def importing(self, *, bulk: bool = False) -> AbstractContextManager[ImportSession]: ...

    def suggest(self, text: str, limit: int) -> list[tuple[str, str, str]]: ...
    def search_persons(self, q: PersonQuery, offset: int, limit: int) -> list[str]: ...
    def search_orgs(self, q: OrgQuery, offset: int, limit: int) -> list[str]: ...
    def search_roles(self, q: RoleQuery, offset: int, limit: int) -> list[str]: ...
    def get_persons(self, ids: Sequence[str]) -> list[Person]: ...
    def get_orgs(self, keys: Sequence[str]) -> list[Organization]: ...
    def get_roles(self, ids: Sequence[str]) -> list[Activity]: ...
    def roles_of(
        self, *, practitioners: Sequence[str] = (), orgs: Sequence[str] = ()
    ) -> list[str]: ...

    def find_mailbox(self, address: str) -> list[Mailbox]: ...
    def put_mailbox(self, mailbox: Mailbox) -> None: ...
    def remove_mailbox(self, address: str) -> int: ...
