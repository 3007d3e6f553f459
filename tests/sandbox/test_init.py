"""``caducee sandbox init`` end to end: files, certificates, liste blanche, storage, policy."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from caducee.cli.main import main
from caducee.config.model import load_config
from caducee.core.errors import Conflict
from caducee.core.model import MailboxType
from caducee.sandbox.init import create_sandbox, luhn_complete
from caducee.storage import open_storage
from caducee.trust.listeblanche import load_liste_blanche
from caducee.trust.policy import TrustPolicy


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("sbx") / "demo"
    assert (
        main(["sandbox", "init", "--dir", str(d), "--operators", "3", "--port-base", "20000"]) == 0
    )
    return d, json.loads((d / "sandbox.json").read_text(encoding="utf-8"))


def test_sandbox_json_schema_and_mode(sandbox: tuple[Path, dict[str, Any]]) -> None:
    d, info = sandbox
    assert stat.S_IMODE((d / "sandbox.json").stat().st_mode) == 0o600
    assert info["version"] == 1
    assert Path(info["ca_bundle"]).is_file()
    ops = info["operators"]
    assert [op["name"] for op in ops] == ["ch-exemple", "medecin", "labo-exemple"]
    assert ops[0]["domains"] == ["ch-exemple.mssante.test"]
    assert "medecin.mssante.test" in ops[1]["domains"]
    for i, op in enumerate(ops):
        base = 20000 + 10 * i
        assert op["relay"] == f"127.0.0.1:{base}"
        assert op["submission"] == f"127.0.0.1:{base + 1}"
        assert op["imap"] == f"127.0.0.1:{base + 2}"
        assert op["imaps"] == f"127.0.0.1:{base + 3}"
        assert op["web"] == f"https://127.0.0.1:{base + 4}"  # the webmail (caducee.web)
        for key in ("client_cert", "client_key", "server_cert", "server_key", "config"):
            assert Path(op[key]).is_file(), key
        assert Path(op["data_dir"]).is_dir()
        assert stat.S_IMODE(Path(op["client_key"]).stat().st_mode) == 0o600
        types = sorted(a["type"] for a in op["accounts"])
        assert types == ["APP", "CAB", "ORG", "PER"]
        passwords = [a["password"] for a in op["accounts"]]
        assert len(set(passwords)) == 4 and all(len(p) >= 20 for p in passwords)
        assert all(a["address"].endswith("@" + op["domains"][0]) for a in op["accounts"])


def test_certificates_chain_to_the_sandbox_ca(sandbox: tuple[Path, dict[str, Any]]) -> None:
    _, info = sandbox
    root, inter = x509.load_pem_x509_certificates(Path(info["ca_bundle"]).read_bytes())
    assert "SANDBOX" in root.subject.rfc4514_string()
    assert "ORGANISATIONS" in inter.subject.rfc4514_string()
    inter.verify_directly_issued_by(root)
    for op in info["operators"]:
        for key in ("server_cert", "client_cert"):
            leaf, chain_inter = x509.load_pem_x509_certificates(Path(op[key]).read_bytes())
            assert chain_inter == inter
            leaf.verify_directly_issued_by(inter)
            assert leaf.subject.rfc4514_string() == op["subject_dn"]
        cn, ou, o, st, c = op["subject_dn"].split(",")
        assert cn == f"CN=mx.{op['domains'][0]}"
        assert o == "O=" + op["organisation"]
        digits = ou.removeprefix("OU=")
        assert digits[0] in "13" and digits[1:] == luhn_complete(digits[1:-1])
        assert st.endswith(")") and "(" in st and c == "C=FR"


def test_liste_blanche_lists_each_operator_dn_for_its_domains(
    sandbox: tuple[Path, dict[str, Any]],
) -> None:
    d, info = sandbox
    liste = load_liste_blanche(d / "liste-blanche.xml")
    assert liste.warnings == ()
    for op in info["operators"]:
        for domain in op["domains"]:
            assert liste.dns_for(domain) == {op["subject_dn"]}
    raw = (d / "liste-blanche.xml").read_bytes()
    assert raw.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante '
        b'xmlns="https://listeblanche.mssante.fr/schema">\n    <DateDeGeneration>'
    )


def test_node_configs_load_and_route_every_domain(sandbox: tuple[Path, dict[str, Any]]) -> None:
    _, info = sandbox
    all_domains = {dom for op in info["operators"] for dom in op["domains"]}
    for op in info["operators"]:
        cfg = load_config(Path(op["config"]))
        assert cfg.name == op["name"]
        assert cfg.domains == op["domains"]
        assert cfg.smtp.relay_listen == op["relay"]
        assert set(cfg.trust.routes) == all_domains
        assert cfg.tls.crl_dir is not None and any(cfg.tls.crl_dir.iterdir())
        assert "password" not in tomllib.loads(Path(op["config"]).read_text(encoding="utf-8"))


async def test_accounts_and_mailboxes_exist_in_storage(
    sandbox: tuple[Path, dict[str, Any]],
) -> None:
    _, info = sandbox
    op = info["operators"][1]
    storage = await open_storage(load_config(Path(op["config"])))
    try:
        for acc in op["accounts"]:
            account = await storage.accounts.verify_password(acc["login"], acc["password"])
            assert account is not None and account.login == acc["login"]
            assert await storage.accounts.verify_password(acc["login"], "wrong") is None
            mailbox = await storage.accounts.get_mailbox(acc["address"])
            assert mailbox is not None and mailbox.type == MailboxType(acc["type"])
            folders = {f.name for f in await storage.messages.list_folders(mailbox.mailbox_id)}
            assert {"INBOX", "Sent"} <= folders
        per = next(a for a in op["accounts"] if a["type"] == "PER")
        owned = {m.address for m, _ in await storage.accounts.mailboxes_of(per["login"])}
        delegated = {a["address"] for a in op["accounts"] if a["type"] in ("ORG", "CAB")}
        assert delegated <= owned  # ORG and CAB are delegated to several accounts
    finally:
        await storage.close()


def test_policies_from_sandbox_configs_trust_each_other(
    sandbox: tuple[Path, dict[str, Any]],
) -> None:
    d, info = sandbox
    a, b = info["operators"][0], info["operators"][1]
    cfg_a = load_config(Path(a["config"]))
    policy_a = TrustPolicy(cfg_a.tls, load_liste_blanche(d / "liste-blanche.xml"))
    client_b = x509.load_pem_x509_certificates(Path(b["client_cert"]).read_bytes())[0]
    der_b = client_b.public_bytes(Encoding.DER)
    assert policy_a.check_inbound(der_b, "medecin.mssante.test").accepted
    assert not policy_a.check_inbound(der_b, "ch-exemple.mssante.test").accepted
    # the conformance certificates behave as their names say
    expected = {
        "cert-expire": "expired",
        "cert-revoque": "revoked",
        "cert-non-igc": "not issued by a trust-space CA",
        "cert-no-match": "not listed",
        "cert-cn-diff-dn": "different DN",
    }
    for case, needle in expected.items():
        pem = Path(info["test_certs"][case]["cert"]).read_bytes()
        cert = x509.load_pem_x509_certificates(pem)[0]
        verdict = policy_a.check_inbound(cert.public_bytes(Encoding.DER), "ch-exemple.mssante.test")
        assert not verdict.accepted and needle in verdict.reason, (case, verdict)
    valid = x509.load_pem_x509_certificates(
        Path(info["test_certs"]["cert-valide"]["cert"]).read_bytes()
    )[0]
    assert policy_a.check_inbound(
        valid.public_bytes(Encoding.DER), "ch-exemple.mssante.test"
    ).accepted


async def test_refuses_an_existing_or_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("hello")
    with pytest.raises(Conflict, match="not empty"):
        await create_sandbox(tmp_path / "x")


def test_sandbox_run_without_a_sandbox_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "run", "--dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no sandbox here" in err and "caducee sandbox init" in err
