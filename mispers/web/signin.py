"""Signing in and out: one-time links (`mispers open`), OpenID Connect, and the purpose a person
gives once per session before any page shows a child's data."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mispers.api.context import ApiContext
from mispers.web.app import PREFIX, error_page
from mispers.web.config import WebSettings
from mispers.web.guard import checked_form, current_session, safe_next
from mispers.web.identity import UiUser
from mispers.web.oidc import CALLBACK_PATH, OidcError, Provider
from mispers.web.session import Session, flow_open, flow_seal
from mispers.web.tickets import USED_DIR, TicketError, peek_ticket, redeem_ticket

router = APIRouter()

FLOW_COOKIE = "mispers_oidc"
FLOW_TTL = 600
PURPOSES = {
    "investigation": "Investigating a missing episode",
    "supervision": "Supervising open episodes",
    "safeguarding": "Safeguarding partnership work",
    "inspection": "Audit or inspection",
}


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.mispers
    return context


def _web(request: Request) -> WebSettings:
    config: WebSettings = request.app.state.web
    return config


def _render(request: Request, name: str, status: int = 200, **values: object) -> HTMLResponse:
    session: Session | None = request.state.session
    values.setdefault("user", session.user if session else None)
    values.setdefault("session", session)
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, name, values, status_code=status
    )
    return response


def _begin(request: Request, user: UiUser, next_path: str) -> Response:
    """A new session (a new CSRF token too), then the purpose question."""
    session = Session.start(user, dt.datetime.now(dt.UTC))
    request.state.session = session
    return RedirectResponse(f"{PREFIX}/purpose?next={quote(safe_next(next_path))}", status_code=303)


@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse(f"{PREFIX}/episodes", status_code=303)


@router.get("/signin")
async def signin_page(
    request: Request,
    ticket: Annotated[str | None, Query(max_length=2048)] = None,
    next: Annotated[str | None, Query(max_length=2048)] = None,
    signed_out: bool = False,
) -> Response:
    context, config = _context(request), _web(request)
    if ticket is not None:
        if not config.tickets:
            return _render(request, "signin.html", 403, error="Sign-in links are turned off.")
        try:
            who = peek_ticket(context.secret, ticket, context.settings.data_dir / USED_DIR)
        except TicketError as exc:
            return _render(request, "signin.html", 403, error=str(exc), oidc=config.oidc)
        return _render(request, "signin_ticket.html", ticket=ticket, who=who, next=safe_next(next))
    return _render(
        request,
        "signin.html",
        oidc=config.oidc,
        next=safe_next(next),
        expired=request.state.expired,
        signed_out=signed_out,
    )


@router.post("/signin")
async def signin_with_ticket(
    request: Request,
    ticket: Annotated[str, Form(max_length=2048)],
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    context, config = _context(request), _web(request)
    if not config.tickets:
        return _render(request, "signin.html", 403, error="Sign-in links are turned off.")
    try:
        user = redeem_ticket(context.secret, ticket, context.settings.data_dir / USED_DIR)
    except TicketError as exc:
        return _render(request, "signin.html", 403, error=str(exc), oidc=config.oidc)
    return _begin(request, user, next)


def _provider(request: Request) -> Provider | None:
    provider: Provider | None = getattr(request.app.state, "oidc", None)
    config = _web(request)
    if provider is None and config.oidc is not None:
        provider = Provider(config.oidc, config.public_url + CALLBACK_PATH)
        request.app.state.oidc = provider
    return provider


@router.get("/oidc/start")
async def oidc_start(
    request: Request, next: Annotated[str | None, Query(max_length=2048)] = None
) -> Response:
    provider = _provider(request)
    if provider is None:
        return error_page(request, 404, "Not found", "No identity provider is configured.")
    try:
        url, flow = await provider.start()
    except Exception as exc:
        return error_page(
            request, 503, "The identity provider cannot be reached", type(exc).__name__
        )
    flow["next"] = safe_next(next)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        _seal_flow(request, flow),
        max_age=FLOW_TTL,
        path=f"{PREFIX}/oidc",
        httponly=True,
        samesite="lax",
        secure=_web(request).secure_cookies,
    )
    return response


@router.get("/oidc/callback")
async def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    provider = _provider(request)
    if provider is None:
        return error_page(request, 404, "Not found", "No identity provider is configured.")
    flow = _open_flow(request)
    try:
        if error or not code or not state:
            raise OidcError("The identity provider did not sign you in.")
        user = await provider.finish(flow, code, state)
    except OidcError as exc:
        response = _render(request, "signin.html", 403, error=str(exc), oidc=_web(request).oidc)
    else:
        session = Session.start(user, dt.datetime.now(dt.UTC))
        request.state.session = session
        # A page, not a redirect: the Strict session cookie is sent from the next navigation on,
        # which this page starts on the dashboard's own site.
        target = f"{PREFIX}/purpose?next={quote(flow.get('next') or '/ui/episodes')}"
        response = _render(request, "signed_in.html", target=target, user=user)
    response.delete_cookie(FLOW_COOKIE, path=f"{PREFIX}/oidc")
    return response


def _seal_flow(request: Request, flow: dict[str, str]) -> str:
    return flow_seal(_context(request).secret, json.dumps(flow), FLOW_TTL)


def _open_flow(request: Request) -> dict[str, str]:
    raw = flow_open(_context(request).secret, request.cookies.get(FLOW_COOKIE))
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@router.get("/purpose")
async def purpose_page(
    request: Request,
    session: Annotated[Session, Depends(current_session)],
    next: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    return _render(request, "purpose.html", purposes=PURPOSES, next=safe_next(next), errors=None)


@router.post("/purpose")
async def purpose_given(
    request: Request,
    session: Annotated[Session, Depends(checked_form)],
    purpose: Annotated[str, Form(max_length=100)] = "",
    detail: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    if purpose not in PURPOSES:
        return _render(
            request,
            "purpose.html",
            400,
            purposes=PURPOSES,
            next=safe_next(next),
            errors=[{"text": "Select why you are using Mispers", "href": "#purpose"}],
        )
    words = PURPOSES[purpose] + (f": {detail.strip()}" if detail.strip() else "")
    request.state.session = session.with_purpose(words)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/signout")
async def signout(request: Request, session: Annotated[Session, Depends(checked_form)]) -> Response:
    request.state.session = None
    response = RedirectResponse(f"{PREFIX}/signin?signed_out=true", status_code=303)
    return response
