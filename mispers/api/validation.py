"""From a well-formed CloudEvent to a domain event: the pydantic models of mispers.domain.events
decide every field rule, so the API states none of its own; the rules that need the present
(mispers.domain.plausibility) are applied here, where a clock may be read."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mispers.api.envelope import Envelope
from mispers.api.problems import FieldProblem, ProblemError, field_problems, invalid_event
from mispers.domain.events import EVENT_MODELS, Actor, AnyEvent, EventBase
from mispers.domain.plausibility import implausibilities

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)
KNOWN_TYPES = tuple(sorted(EVENT_MODELS))


def check_type(envelope: Envelope) -> str:
    """The event type, if we know it; checked before anything else so that the role rules
    (which depend on the type) can be applied before the data is looked at."""
    if envelope.type not in EVENT_MODELS:
        raise invalid_event(
            [
                FieldProblem(
                    field="type",
                    rule="unknown_event_type",
                    message="not a Mispers event type (see GET /v1/event-types)",
                    constraints={"expected": ", ".join(KNOWN_TYPES)},
                )
            ]
        )
    return envelope.type


def to_event(envelope: Envelope, actor: Actor) -> EventBase:
    """Validate into the domain model; the actor is the token's, never the sender's say-so."""
    document: dict[str, Any] = dict(envelope.attributes)
    if envelope.has_data:
        document["data"] = envelope.data
    document["actor"] = actor
    try:
        event: EventBase = EVENT_ADAPTER.validate_python(document)
    except ValidationError as exc:
        raise _problem(exc, envelope.type) from None
    wrong = implausibilities(event, dt.datetime.now(dt.UTC))
    if wrong:
        raise invalid_event(
            [FieldProblem(field=w.field, rule=w.rule, message=w.message) for w in wrong]
        )
    return event


def _problem(exc: ValidationError, event_type: str) -> ProblemError:
    errors = exc.errors(include_url=False, include_input=True)
    # A discriminated union puts the tag first in every location: it is not a field.
    tagged = all(err["loc"][:1] == (event_type,) for err in errors)
    return invalid_event(field_problems(errors, drop_prefix=1 if tagged else 0))
