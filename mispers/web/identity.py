"""Who is signed in to the dashboard, and how that person appears to the rest of Mispers.

This is the one place where a dashboard session becomes an API caller: the Actor an event is
posted as, the rank its decisions carry, and the purpose recorded with every read (the value the
API takes from `X-Mispers-Purpose`). Keep the dashboard's other modules going through here."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from mispers.api.access import record_access
from mispers.domain.events import Actor
from mispers.domain.types import Rank, Role
from mispers.security.audit import PURPOSE_HEADER, AuditAction

# The rank a person holds when the sign-in did not say (a supervisor is at least a sergeant).
DEFAULT_RANK: Mapping[Role, Rank] = {
    Role.SUPERVISOR: Rank.SERGEANT,
    Role.OFFICER: Rank.OFFICER,
    Role.AUDITOR: Rank.OFFICER,
    Role.SYSTEM: Rank.OFFICER,
}


class UiUser(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str = Field(min_length=1, max_length=200)
    role: Role
    rank: Rank
    purpose: str | None = None
    via: str = "ticket"

    @property
    def actor(self) -> Actor:
        """The caller the API sees: subject, role and rank, as a token would carry them."""
        rank = None if self.role in (Role.SYSTEM, Role.AUDITOR) else self.rank
        return Actor(subject=self.subject, role=self.role, rank=rank)

    @property
    def may_send(self) -> bool:
        return self.role in (Role.OFFICER, Role.SUPERVISOR)

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR

    @property
    def is_auditor(self) -> bool:
        return self.role is Role.AUDITOR

    def purpose_headers(self) -> dict[str, str]:
        """What an API call made on this person's behalf carries."""
        return {PURPOSE_HEADER: self.purpose} if self.purpose else {}


def user_for(subject: str, role: Role, rank: Rank | None, via: str) -> UiUser:
    return UiUser(subject=subject, role=role, rank=rank or DEFAULT_RANK[role], via=via)


def api_request(request: Request, user: UiUser) -> Request:
    """The page's request as the API's functions should see it: carrying the purpose the person
    gave for the session in `X-Mispers-Purpose`, so the API's own access audit records it."""
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"x-mispers-purpose"]
    if user.purpose:
        headers.append((PURPOSE_HEADER.lower().encode(), user.purpose.encode()))
    return Request({**request.scope, "headers": headers}, request.receive)


async def audit_read(
    request: Request,
    user: UiUser,
    action: AuditAction,
    *,
    episode_ids: list[str],
) -> None:
    """A read the API's functions do not record themselves (the alert views read states)."""
    await record_access(
        api_request(request, user), user.actor, action, episode_ids=episode_ids,
        detail={"via": "dashboard"},
    )  # fmt: skip
