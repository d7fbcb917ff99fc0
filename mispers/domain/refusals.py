"""Why the rules refuse an event: a code a program can branch on, a sentence a person can act on,
and details (open obligations, the floor and its reasons). A refusal's `kind` says whose rule it
is: the episode's (`rules`, answered 409) or the sender's authority (`authority`: the token's role
or rank may not post this, answered 403)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RefusalKind = Literal["rules", "authority"]
RULES: RefusalKind = "rules"
AUTHORITY: RefusalKind = "authority"


class Refusal(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    kind: RefusalKind = RULES


class EventRefused(Exception):
    """Raised by the pure rules; the workflow's Update validator turns it into a rejection."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def refuse(code: str, message: str, **details: Any) -> EventRefused:
    return EventRefused(Refusal(code=code, message=message, details=details))
