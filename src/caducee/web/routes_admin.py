"""Administration pages of the operator: mailboxes and delegations, the outbound queue, the
trust list (liste blanche) status and age. Only for the logins listed in ``[web] admins``;
every change is a CSRF-checked POST and an audit event."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from caducee.core.errors import CaduceeError
from caducee.web.context import Forbidden, WebContext
from caducee.web.sessions import WebSession

__all__ = ["admin_page", "delegation", "queue_retry"]

_RIGHTS = "lrswipkxtea"


def _admin(ctx: WebContext, request: Request) -> WebSession:
    session = ctx.session_of(request)
    if not ctx.is_admin(session):
        raise Forbidden("Réservé aux administrateurs de l'opérateur.")
    return session


def _age(then: datetime | None) -> str:
    if then is None:
        return "inconnu"
    secs = int((datetime.now(UTC) - then).total_seconds())
    if secs < 3600:
        return f"{secs // 60} min"
    if secs < 86400 * 2:
        return f"{secs // 3600} h"
    return f"{secs // 86400} jours"


async def admin_page(ctx: WebContext, request: Request) -> Response:
    session = _admin(ctx, request)
    accounts = ctx.storage.accounts
    boxes = []
    for mb in await accounts.list_mailboxes():
        boxes.append((mb, await accounts.acl(mb.mailbox_id)))
    queue = await ctx.storage.queue.list()
    liste = ctx.liste()
    generated = liste.generated if liste is not None else None
    max_age = ctx.cfg.trust.max_age_seconds
    stale = generated is None or (datetime.now(UTC) - generated).total_seconds() > max_age
    await ctx.audit(session, "web.admin.view", ctx.cfg.name)
    return ctx.render(
        request,
        "admin.html",
        {
            "boxes": await ctx.mailboxes(session),
            "current": session.current,
            "mailboxes": boxes,
            "accounts": await accounts.list_accounts(),
            "queue": queue,
            "liste": liste,
            "liste_age": _age(generated),
            "liste_stale": stale,
            "liste_source": ctx.cfg.trust.liste_blanche,
            "trust_loaded": ctx.trust_loaded,
            "rights": _RIGHTS,
            "message": request.query_params.get("m", ""),
        },
        session=session,
    )


async def delegation(ctx: WebContext, request: Request) -> Response:
    session = _admin(ctx, request)
    form = await request.form()
    if not session.check_csrf(str(form.get("csrf") or "")):
        raise Forbidden("Jeton anti-falsification (CSRF) invalide : rechargez la page.")
    login = str(form.get("login", "")).strip()
    address = str(form.get("bal", "")).strip()
    action = str(form.get("action", ""))
    rights = "".join(c for c in str(form.get("droits", "lrswipkxte")) if c in _RIGHTS)
    try:
        if action == "retirer":
            await ctx.storage.accounts.revoke(login, address)
        else:
            if await ctx.storage.accounts.get_account(login) is None:
                raise Forbidden(f"Compte inconnu : {login}")
            await ctx.storage.accounts.grant(login, address, rights or "lr")
    except CaduceeError as exc:
        return RedirectResponse(f"/admin?m={type(exc).__name__}", 303)
    await ctx.audit(
        session, "web.admin.delegation", address, login=login, action=action, rights=rights
    )
    return RedirectResponse("/admin?m=ok#delegations", 303)


async def queue_retry(ctx: WebContext, request: Request) -> Response:
    session = _admin(ctx, request)
    form = await request.form()
    if not session.check_csrf(str(form.get("csrf") or "")):
        raise Forbidden("Jeton anti-falsification (CSRF) invalide : rechargez la page.")
    text = str(form.get("item") or "0")
    item = int(text) if text.isdigit() and len(text) < 12 else 0
    await ctx.storage.queue.retry_now(item)
    if ctx.wake is not None:
        ctx.wake()
    await ctx.audit(session, "web.admin.queue.retry", str(item))
    return RedirectResponse("/admin?m=ok#file", 303)
