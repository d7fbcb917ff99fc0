"""The /ui application: its own middleware (session, security headers) and error pages, mounted
inside the API app so it shares the API's context (engine client, policy, secret, audit sink)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, PackageLoader, PrefixLoader, select_autoescape
from starlette.templating import Jinja2Templates

from mispers.api.access import app_audit_sink
from mispers.api.context import ApiContext
from mispers.api.problems import ProblemError
from mispers.web import views
from mispers.web.config import WebSettings, web_settings
from mispers.web.session import COOKIE, COOKIE_PATH, Session, seal, unseal

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Exception):
    """No (live) session: the visitor is sent to sign in, then back where they were going."""


class PurposeRequired(Exception):
    """Signed in, but no purpose given yet for this session."""


def templates() -> Jinja2Templates:
    env = Environment(
        loader=ChoiceLoader(
            [
                PackageLoader("mispers.web", "templates"),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        risk_labels=views.RISK_LABELS,
        risk_tags=views.RISK_TAGS,
        flag_labels=views.FLAG_LABELS,
        humanise=views.humanise,
        countdown=views.countdown,
        stamp=views.stamp,
        items_of=views.items_of,
    )
    return Jinja2Templates(env=env)


def mount_web(api: FastAPI, context: ApiContext) -> FastAPI:
    """Mount the dashboard on `api` at /ui; also serve /docs from local Swagger UI assets."""
    from mispers.web import decisions, pages, signin

    config = web_settings(context.settings)
    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    web.state.mispers = context
    web.state.audit = app_audit_sink(api, context.settings)
    web.state.web = config
    web.state.templates = templates()
    web.mount("/static", StaticFiles(directory=STATIC), name="static")
    web.include_router(signin.router)
    web.include_router(pages.router)
    web.include_router(decisions.router)
    _install_session(web, context.secret, config)
    _install_errors(web)
    api.mount(PREFIX, web)
    _install_docs(api)
    return web


def _install_session(web: FastAPI, secret: bytes, config: WebSettings) -> None:
    @web.middleware("http")
    async def session_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        now = dt.datetime.now(dt.UTC)
        had_cookie = COOKIE in request.cookies
        session = unseal(secret, request.cookies.get(COOKIE), now, config.idle)
        request.state.session = session.touched(now) if session else None
        request.state.expired = had_cookie and session is None
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith(f"{PREFIX}/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        final: Session | None = request.state.session
        if final is not None:
            set_session_cookie(response, secret, final, config)
        elif had_cookie:
            response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response


def set_session_cookie(
    response: Response, secret: bytes, session: Session, config: WebSettings
) -> None:
    response.set_cookie(
        COOKIE,
        seal(secret, session),
        max_age=int(config.idle.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=config.secure_cookies,
    )


def _install_errors(web: FastAPI) -> None:
    @web.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/signin?next={quote(target)}", status_code=303)

    @web.exception_handler(PurposeRequired)
    async def to_purpose(request: Request, exc: PurposeRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/purpose?next={quote(target)}", status_code=303)

    @web.exception_handler(ProblemError)
    async def problem_page(request: Request, exc: ProblemError) -> Response:
        return error_page(request, exc.problem.status, exc.problem.title, exc.problem.detail)


def error_page(request: Request, status: int, title: str, detail: str | None) -> HTMLResponse:
    page: Jinja2Templates = request.app.state.templates
    session: Session | None = getattr(request.state, "session", None)
    return page.TemplateResponse(
        request,
        "error.html",
        {
            "user": session.user if session else None,
            "session": session,
            "title": title,
            "detail": detail,
            "status": status,
        },
        status_code=status,
    )


def _install_docs(api: FastAPI) -> None:
    """Swagger UI from the assets Mispers ships (/ui/static/swagger-ui): a closed network has
    no CDN. The page is FastAPI's own, pointed at those files."""
    api.router.routes = [r for r in api.router.routes if getattr(r, "path", None) not in ("/docs",)]

    @api.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{api.title} - API",
            swagger_js_url=f"{PREFIX}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/static/swagger-ui/favicon-32x32.png",
        )
