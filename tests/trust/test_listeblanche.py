"""Reading and writing the real liste blanche format (notes §1.1, corpus trust/)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pytest

from caducee.trust.dn import DistinguishedName
from caducee.trust.listeblanche import (
    DomainEntry,
    ListeBlanche,
    ListeBlancheError,
    load_liste_blanche,
    parse_liste_blanche,
    read_liste_blanche,
    save_liste_blanche,
    serialise_liste_blanche,
)

MIPIH = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
ROOT_END = b"</ListeBlancheMSSante>\n"


@pytest.fixture(scope="module")
def real_bytes(shared_dir: Path) -> bytes:
    return (
        shared_dir / "corpora/trust/listeblanchemssante-2025-05-head-truncated.xml"
    ).read_bytes()


@pytest.fixture(scope="module")
def real(real_bytes: bytes) -> ListeBlanche:
    return parse_liste_blanche(real_bytes)


def test_real_file_loads_with_a_warning_for_the_missing_root_end_tag(
    real_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        liste = parse_liste_blanche(real_bytes)
    assert len(liste.entries) == real_bytes.count(b"<Domaine>") == 619
    assert liste.generated == dt.datetime(2025, 3, 13, 14, 54, 10, tzinfo=dt.UTC)
    assert any("root end tag" in w for w in liste.warnings)
    assert "root end tag" in caplog.text
    first = liste.entries[0]
    assert first.name == "nddtestasmae.mssante.fr"
    assert first.dn == MIPIH
    assert first.responsable_contact == "08 10  61 50 50, medimail.diffusion@mipih.fr"
    assert first.updated == dt.datetime(2025, 3, 14, 15, 34, 10, tzinfo=dt.UTC)


def test_lookups_on_real_file(real: ListeBlanche) -> None:
    assert real.is_listed("adsea29.mssante.fr")
    assert real.is_listed("ADSEA29.MSSANTE.FR.")
    assert not real.is_listed("sub.adsea29.mssante.fr")
    assert not real.is_listed("mssante.fr")
    assert real.dns_for("adsea29.mssante.fr") == {MIPIH}
    assert not real.dn_listed_for("adsea29.mssante.fr", DistinguishedName.parse(MIPIH.lower()))
    assert real.dn_listed_for(
        "adsea29.mssante.fr", DistinguishedName.parse(MIPIH.replace("CN=", "cn="))
    )
    # unescaped XML entities come back as text
    assert any("AGE & VIE" in e.description for e in real.entries)


def test_writer_is_byte_compatible_with_the_real_file(
    real: ListeBlanche, real_bytes: bytes
) -> None:
    out = serialise_liste_blanche(real)
    assert out == real_bytes + ROOT_END


def test_round_trip_of_what_we_write(real: ListeBlanche) -> None:
    out = serialise_liste_blanche(real)
    again = parse_liste_blanche(out)
    assert again.warnings == ()
    assert again.entries == real.entries
    assert serialise_liste_blanche(again) == out


def test_writer_escapes_and_empty_fields(tmp_path: Path) -> None:
    entry = DomainEntry(
        name="a.mssante.test",
        dn="CN=mx.a.test,OU=1,O=A & B <x>,ST=Paris (75),C=FR",
        description="",
        responsable_contact='l\'équipe "support"',
        updated=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    liste = ListeBlanche(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), [entry])
    data = serialise_liste_blanche(liste)
    assert (
        b"<DNCertificatOperateur>CN=mx.a.test,OU=1,O=A &amp; B &lt;x&gt;,ST=Paris (75),C=FR<"
        in data
    )
    assert b"<Description/>" in data
    assert '<ResponsableContact>l\'équipe "support"</ResponsableContact>'.encode() in data
    assert b"<DateMAJ>2026-01-02T03:04:05Z</DateMAJ>" in data
    path = tmp_path / "lb.xml"
    save_liste_blanche(liste, path)
    assert load_liste_blanche(path).entries == [entry]
    with pytest.raises(ListeBlancheError):
        serialise_liste_blanche(ListeBlanche(liste.generated, [DomainEntry("x\x01", "CN=a")]))


def test_file_cut_inside_an_entry_is_refused_with_a_clear_error(real_bytes: bytes) -> None:
    cut = real_bytes[: real_bytes.index(b"<DNCertificatOperateur>", 100_000) + 30]
    with pytest.raises(ListeBlancheError, match=r"cut inside entry \d+ \(after [a-z0-9.-]+\)"):
        parse_liste_blanche(cut)


def test_file_cut_between_entries_is_refused(real_bytes: bytes) -> None:
    cut = real_bytes[: real_bytes.rindex(b"</Domaine>") + len(b"</Domaine>\n")]
    with pytest.raises(ListeBlancheError, match="entries may be missing"):
        parse_liste_blanche(cut)


def test_file_cut_inside_a_tag_is_refused(real_bytes: bytes) -> None:
    with pytest.raises(ListeBlancheError, match="cut inside entry"):
        parse_liste_blanche(real_bytes[:-40])


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not well-formed"),
        (b"<x/>", "root element"),
        (
            b'<ListeBlancheMSSante xmlns="urn:other"><DateDeGeneration/></ListeBlancheMSSante>',
            "namespace",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]>'
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema"/>',
            "DOCTYPE",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
            b"<ListeDomaines></ListeDomaines></ListeBlancheMSSante>",
            "no DateDeGeneration",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
            b"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration><ListeDomaines>"
            b"<Domaine><Nom>a.fr</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>",
            "without DNCertificatOperateur",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
            b"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration><ListeDomaines>"
            b"<Domaine><Nom>a.fr</Nom><Nom>b.fr</Nom><DNCertificatOperateur>CN=x</DNCertificatOperateur>"
            b"</Domaine></ListeDomaines></ListeBlancheMSSante>",
            "repeated",
        ),
        (
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
            b"<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration><ListeDomaines>"
            b"<Domaine><Nom>&ext;</Nom></Domaine></ListeDomaines></ListeBlancheMSSante>",
            "not well-formed",
        ),
    ],
)
def test_malformed_inputs_are_refused(data: bytes, needle: str) -> None:
    with pytest.raises(ListeBlancheError, match=needle):
        parse_liste_blanche(data)


def test_lenient_read_reports_everything(real_bytes: bytes) -> None:
    result = read_liste_blanche(real_bytes.replace(b"2025-01-22T15:41:55Z", b"22/01/2025"))
    assert not result.errors
    assert any("unreadable DateMAJ" in d.message for d in result.defects)
    assert len(result.entries) == 619


def test_whole_list_scale_loads_well_under_a_second(real: ListeBlanche) -> None:
    """The whole published list has ~6,500-8,700 entries; build 11x the corpus (6,809)."""
    big = serialise_liste_blanche(ListeBlanche(real.generated, real.entries * 11))
    parse_liste_blanche(big)  # warm-up (imports, allocator)
    best = float("inf")  # CPU time: the machine is shared, wall time is noise
    for _ in range(3):
        start = time.process_time()
        liste = parse_liste_blanche(big)
        best = min(best, time.process_time() - start)
    assert len(liste.entries) == 6809
    assert best < 0.6, f"{best:.3f}s"
