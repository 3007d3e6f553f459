"""The webmail in a real browser: Debian's Chromium driven by Playwright (no download at run
time: ``executable_path=/usr/bin/chromium``).

A nurse on a phone (375x812) logs in through the identity provider, finds a dermatologist at
another operator by typing part of the name, attaches a photo (a huge one, downscaled in the
browser), sends it with a read receipt; the dermatologist logs in on a desktop and sees the
photo, sends the read receipt; the nurse sees "remis" and "lu" for that recipient. Screenshots
of the main pages go to ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import email
import email.policy
import struct
import zlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
from playwright.async_api import Browser, Page, async_playwright, expect

from caducee.documents.xdm import build_xdm
from web.harness import World, world

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PHONE: dict[str, Any] = {
    "viewport": {"width": 375, "height": 812},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 1,
    "locale": "fr-FR",
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}, "locale": "fr-FR"}


def big_png(width: int = 3200, height: int = 2400) -> bytes:
    """A large photo-sized PNG (a gradient: big in pixels, cheap to make)."""
    row = bytes(
        b for x in range(width) for b in ((x * 255) // width, 120, 255 - (x * 255) // width)
    )
    raw = b"".join(b"\x00" + row for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    admins = {"chu": ["ines.moreau@ch-exemple.mssante.test"]}
    async with world(tmp_path, admins=admins) as ww:
        yield ww


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            await b.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def login(page: Page, w: World, op: str, user: str) -> None:
    await page.goto(f"{w.urls[op]}/connexion")
    await page.get_by_role("link", name="Se connecter avec Pro Santé Connect").click()
    await page.get_by_role("textbox", name="Identifiant").fill(w.users[user].login)
    await page.get_by_label("Mot de passe", exact=True).fill("Mot-de-passe-de-test-1")
    await page.get_by_label("Code à 6 chiffres").fill(w.code(user))
    await page.get_by_role("button", name="Se connecter").click()
    await page.wait_for_url(f"{w.urls[op]}/courrier**")


async def deliver_xdm(w: World, shared: Path) -> None:
    """A CDA in an IHE_XDM.zip, straight into the dermatologist's INBOX (as from a lab)."""
    cda = (shared / "corpora/clinical/cda-fr-cisis/BIO-CR-BIO_2024.01_TSH_1.xml").read_bytes()
    msg = EmailMessage()
    msg["From"] = "resultats@ch-exemple.mssante.test"
    msg["To"] = w.users["dermato"].address
    msg["Subject"] = "Compte rendu de biologie"
    msg["Message-ID"] = "<xdm-1@ch-exemple.mssante.test>"
    msg.set_content("Veuillez trouver le compte rendu ci-joint.")
    msg.add_attachment(build_xdm([cda]), maintype="application", subtype="zip",
                       filename="IHE_XDM.zip")  # fmt: skip
    storage = w.ops["cabinet"].storage
    assert storage is not None
    blob = await storage.blobs.put(msg.as_bytes(policy=email.policy.SMTP))
    mb = await storage.accounts.get_mailbox(w.users["dermato"].address)
    assert mb is not None
    await storage.messages.deliver(blob, [mb.mailbox_id])


async def test_nurse_sends_photo_to_dermatologist_with_read_receipt(
    w: World, browser: Browser, shared_dir: Path
) -> None:
    derm = w.users["dermato"].address
    await deliver_xdm(w, shared_dir)
    # --- the nurse, on a phone
    phone = await browser.new_context(**PHONE, ignore_https_errors=True)
    nurse = await phone.new_page()
    csp_errors: list[str] = []
    nurse.on(
        "console", lambda m: csp_errors.append(m.text) if "Content Security" in m.text else None
    )
    await login(nurse, w, "chu", "infirmiere")
    await expect(nurse.get_by_role("heading", name="Boîte de réception")).to_be_visible()
    await shot(nurse, "01-liste-mobile")
    # keyboard: the first Tab reaches the skip link, which moves focus to the content
    await nurse.keyboard.press("Tab")
    await expect(nurse.get_by_role("link", name="Aller au contenu")).to_be_focused()
    await nurse.get_by_role("link", name="Écrire").click()
    unlabelled = await nurse.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .map(e => e.name)"""
    )
    assert unlabelled == []
    to = nurse.get_by_role("combobox", name="À")
    await to.press_sequentially("lefev", delay=40)
    option = nurse.get_by_role("option").filter(has_text="Lefèvre-Dupont")
    await expect(option.first).to_be_visible()
    await shot(nurse, "02-autocompletion-mobile")
    await to.press("ArrowDown")
    await to.press("Enter")
    await expect(to).to_have_value(f"{derm}, ")
    await nurse.get_by_label("Objet", exact=True).fill("Lésion cutanée — avis")
    await nurse.get_by_label("Message", exact=True).fill(
        "Bonjour Docteur, voici la photo de la lésion."
    )
    photo = big_png()
    assert len(photo) > 20_000
    await nurse.locator("#photo").set_input_files(
        files=[{"name": "lesion.png", "mimeType": "image/png", "buffer": photo}]
    )
    await expect(nurse.locator("#photo")).to_have_attribute("data-ready", "1", timeout=20000)
    await expect(nurse.locator("#choisis")).to_contain_text("lesion.jpg")
    await nurse.get_by_label("Accusé de lecture").check()
    await shot(nurse, "03-ecrire-mobile")
    await nurse.get_by_role("button", name="Envoyer").click()
    await expect(nurse.get_by_role("heading", name="Suivi par destinataire")).to_be_visible()
    sent_url = nurse.url
    await shot(nurse, "03b-envoye-mobile")
    # the phone layout does not scroll sideways
    width = await nurse.evaluate("document.documentElement.scrollWidth")
    assert width <= 375

    # --- the dermatologist, on a desktop, at the other operator
    desk = await browser.new_context(**DESKTOP, ignore_https_errors=True)
    doc = await desk.new_page()
    await login(doc, w, "cabinet", "dermato")
    link = doc.get_by_role("link").filter(has_text="Lésion cutanée")
    for _ in range(100):
        if await link.count():
            break
        await doc.wait_for_timeout(200)  # polling the page for the relayed message
        await doc.reload()
    await shot(doc, "04-liste-bureau")
    await link.first.click()
    img = doc.locator("img.preview")
    await expect(img).to_be_visible()
    natural = await img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert 0 < natural[0] <= 2048 and natural[1] > 0, natural  # downscaled by the browser
    await shot(doc, "05-lecture-photo-bureau")
    await doc.get_by_role("button", name="Envoyer l'accusé de lecture").click()
    await expect(doc.get_by_text("Accusé de lecture envoyé")).to_be_visible()
    # the XDM is shown as a document, the patient's identity first
    await doc.goto(f"{w.urls['cabinet']}/courrier")
    await doc.get_by_role("link").filter(has_text="Compte rendu de biologie").click()
    await expect(doc.locator(".patient")).to_contain_text("INS")
    await shot(doc, "06-document-cda-bureau")

    # the received photo is small and a JPEG
    storage = w.ops["cabinet"].storage
    assert storage is not None
    mb = await storage.accounts.get_mailbox(derm)
    assert mb is not None
    inbox = await storage.messages.get_folder(mb.mailbox_id, "INBOX")
    assert inbox is not None
    msgs = await storage.messages.list_messages(inbox.folder_id)
    raw = [await storage.blobs.get(m.blob) for m in msgs]
    got = [email.message_from_bytes(r, policy=email.policy.default) for r in raw]
    lesion = next(m for m in got if "Lésion" in str(m["Subject"]))
    assert lesion["Disposition-Notification-To"]
    (part,) = [p for p in lesion.walk() if p.get_filename()]
    assert part.get_content_type() == "image/jpeg"
    assert len(part.get_payload(decode=True)) < len(photo)

    # --- the nurse sees delivery and reading, per recipient
    row = nurse.locator(f'tr[data-recipient="{derm}"]')
    for _ in range(150):
        await nurse.goto(sent_url)
        text = await row.inner_text()
        if "lu" in text.split("\t")[-1] and "remis" in text:
            break
        await nurse.wait_for_timeout(200)
    await expect(row).to_contain_text("remis")
    await expect(row.locator(".lecture")).to_contain_text("lu")
    await shot(nurse, "07-accuses-mobile")

    # the other main pages, for the documentation
    await nurse.goto(f"{w.urls['chu']}/annuaire?q=lefevre")
    await expect(nurse.get_by_role("heading", name="Claire Lefèvre-Dupont")).to_be_visible()
    await shot(nurse, "08-annuaire-mobile")
    # the same session on a desktop (a TOTP code is good once: no second login in this step)
    state = await phone.storage_state()
    desk2 = await browser.new_context(**DESKTOP, ignore_https_errors=True, storage_state=state)
    admin = await desk2.new_page()
    await admin.goto(f"{w.urls['chu']}/admin")
    await expect(
        admin.get_by_role("heading", name="Liste blanche (espace de confiance)")
    ).to_be_visible()
    await shot(admin, "09-admin-bureau")
    assert csp_errors == []  # no inline script or style anywhere: the strict CSP holds
    for c in (phone, desk, desk2):
        await c.close()


async def test_login_failure_and_csrf_in_browser(w: World, browser: Browser) -> None:
    ctx = await browser.new_context(**PHONE, ignore_https_errors=True)
    page = await ctx.new_page()
    await page.goto(f"{w.urls['chu']}/connexion")
    await shot(page, "00-connexion-mobile")
    await page.get_by_role("link", name="Se connecter avec Pro Santé Connect").click()
    await page.get_by_role("textbox", name="Identifiant").fill("infirmiere")
    await page.get_by_label("Mot de passe", exact=True).fill("mauvais mot de passe")
    await page.get_by_label("Code à 6 chiffres").fill(w.code("infirmiere"))
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    assert "/courrier" not in page.url
    # a forged cross-site form post is refused even with the session cookie
    await login(page, w, "chu", "infirmiere")
    status = await page.evaluate(
        """async () => (await fetch('/message/drapeaux', {method: 'POST', body:
             new URLSearchParams({csrf: 'forged', action: 'lu', bal: 'x', uid: '1'})})).status"""
    )
    assert status == 403
    # logging out ends the identity provider's session too: the next "Se connecter" asks again
    await page.get_by_role("button", name="Déconnexion").click()
    await expect(page.get_by_text("Vous êtes déconnecté")).to_be_visible()
    await page.goto(f"{w.urls['chu']}/connexion")
    await page.get_by_role("link", name="Se connecter avec Pro Santé Connect").click()
    await expect(page.get_by_role("textbox", name="Identifiant")).to_be_visible()
    await ctx.close()
