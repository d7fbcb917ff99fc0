"""Who may see a page: dependencies the page routes declare (signed in, purpose given, a role
the API lets read), and the CSRF check every form post makes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request

from mispers.api.auth import PERMISSIONS, Action
from mispers.api.problems import forbidden
from mispers.domain.types import Role
from mispers.web.identity import UiUser
from mispers.web.session import Session


def current_session(request: Request) -> Session:
    from mispers.web.app import SignInRequired

    session: Session | None = request.state.session
    if session is None:
        raise SignInRequired()
    return session


def reader(session: Annotated[Session, Depends(current_session)]) -> UiUser:
    """A person who may read episodes (as the API's READ permission) and has given a purpose."""
    from mispers.web.app import PurposeRequired

    user = session.user
    if user.role not in PERMISSIONS[Action.READ]:
        raise forbidden(f"role '{user.role.value}' may not read episodes")
    if not user.purpose:
        raise PurposeRequired()
    return user


def alert_handler(user: Annotated[UiUser, Depends(reader)]) -> UiUser:
    """The people paged (as the API's HANDLE_ALERTS permission): an auditor reads no alerts."""
    if user.role not in PERMISSIONS[Action.HANDLE_ALERTS]:
        raise forbidden(f"role '{user.role.value}' may not handle alerts")
    return user


def auditor(user: Annotated[UiUser, Depends(reader)]) -> UiUser:
    if user.role is not Role.AUDITOR:
        raise forbidden("the audit is for the auditor role", required_role=Role.AUDITOR.value)
    return user


def checked_form(
    session: Annotated[Session, Depends(current_session)],
    csrf_token: Annotated[str, Form()] = "",
) -> Session:
    """Every form carries the session's CSRF token; a post without it changes nothing."""
    if not session.csrf_ok(csrf_token):
        raise forbidden("the form is out of date or not from this site: reload and try again")
    return session


def safe_next(target: str | None) -> str:
    """Only a path of the dashboard itself (never another site) is a place to return to."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//"):
        return target
    return "/ui/episodes"
