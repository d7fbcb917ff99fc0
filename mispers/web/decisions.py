"""Decisions made where they are read. Each form becomes one CloudEvent, posted through the
API's ingest path as the signed-in person (`mispers.api.ingest.record`): the same envelope
parser, role rules, validation and episode rules as any other source. The pages have no powers
of their own; a refusal comes back as the API's problem and is shown as an error summary."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from mispers.api import ingest, reads
from mispers.api.context import ApiContext
from mispers.api.envelope import parse_structured_object
from mispers.api.problems import Problem, ProblemError
from mispers.domain.events import REF_PATTERN
from mispers.web.guard import checked_form, reader
from mispers.web.identity import UiUser, api_request
from mispers.web.pages import episode_view
from mispers.web.session import Session

router = APIRouter()
SOURCE = "mispers-dashboard"

DONE_MESSAGES = {
    "contact": "Social services contact recorded",
    "enquiry": "Enquiry recorded",
    "risk": "Risk grade recorded",
    "ack": "Alert acknowledged",
    "closure-request": "Closure requested",
    "closure-approval": "Closure approved: the episode is closed",
    "duplicate": "Already recorded: this form had been sent before",
}
# Where each form's first field is, for the error summary's link.
FIRST_FIELD = {
    "contact": "contact-authority",
    "enquiry": "enquiry-kind",
    "risk": "risk-level",
    "ack": "alerts",
    "closure-request": "closure-request-rationale",
    "closure-approval": "closure-approval-rationale",
}


def form_token() -> str:
    """A fresh event id for a form: sending the same form twice records the event once."""
    return f"ui-{secrets.token_urlsafe(12)}"


async def _form(request: Request) -> FormData:
    return await request.form(max_fields=200)


async def _submit(
    request: Request,
    user: UiUser,
    episode_id: str,
    form: str,
    event_type: str,
    event_id: str,
    data: dict[str, Any],
    values: dict[str, str],
) -> Response:
    context: ApiContext = request.app.state.mispers
    document = {
        "specversion": "1.0",
        "id": event_id if event_id.startswith("ui-") else form_token(),
        "source": SOURCE,
        "type": event_type,
        "subject": episode_id,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "data": data,
    }
    try:
        envelope = parse_structured_object(document)
        answer = await ingest.record(api_request(request, user), context, user.actor, envelope)
    except ProblemError as err:
        if err.problem.status in (404, 503):
            raise
        state = await reads.get_episode(api_request(request, user), user.actor, episode_id)
        return episode_view(
            request,
            user,
            state,
            errors=error_list(err.problem, FIRST_FIELD.get(form, "main-content")),
            failed_form=form,
            values=values,
            status=err.problem.status,
        )
    done = "duplicate" if answer.status == "duplicate" else form
    return RedirectResponse(f"/ui/episodes/{episode_id}?done={done}#{form}", status_code=303)


def error_list(problem: Problem, anchor: str) -> list[dict[str, str]]:
    """The GOV.UK error summary's items: the rule that refused, in words and by name."""
    href = f"#{anchor}"
    if problem.refusal is not None:
        return [{"text": f"{problem.refusal.message} (rule: {problem.refusal.code})", "href": href}]
    if problem.errors:
        return [
            {"text": f"{_field_name(e.field)}: {e.message} (rule: {e.rule})", "href": href}
            for e in problem.errors
        ]
    rule = problem.type.rsplit(":", 1)[-1]
    return [{"text": f"{problem.detail or problem.title} (rule: {rule})", "href": href}]


def _field_name(path: str) -> str:
    return path.removeprefix("data.").replace("_", " ").replace(".", " ")


Checked = Annotated[Session, Depends(checked_form)]
Reader = Annotated[UiUser, Depends(reader)]
EpisodeId = Annotated[str, Path(pattern=REF_PATTERN)]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


@router.post("/episodes/{episode_id}/contact")
async def record_contact(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    form = await _form(request)
    data = {
        "direction": _text(form, "direction") or "outbound",
        "authority": _text(form, "authority"),
        "contact_name": _text(form, "contact_name"),
        "method": _text(form, "method"),
        "purpose": _text(form, "purpose"),
        "summary": _text(form, "summary"),
        "officer_id": user.subject,
    }
    return await _submit(
        request,
        user,
        episode_id,
        "contact",
        "mispers.social_services.contacted",
        _text(form, "event_id"),
        data,
        _values(form),
    )


@router.post("/episodes/{episode_id}/enquiry")
async def record_enquiry(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    form = await _form(request)
    data = {
        "kind": _text(form, "kind"),
        "outcome": _text(form, "outcome"),
        "officer_id": user.subject,
    }
    return await _submit(
        request,
        user,
        episode_id,
        "enquiry",
        "mispers.enquiry.recorded",
        _text(form, "event_id"),
        data,
        _values(form),
    )


@router.post("/episodes/{episode_id}/risk")
async def record_risk(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    form = await _form(request)
    data = {
        "level": _text(form, "level"),
        "rationale": _text(form, "rationale"),
        "assessed_by": user.subject,
        "rank": user.rank.value,
    }
    return await _submit(
        request,
        user,
        episode_id,
        "risk",
        "mispers.risk.assessed",
        _text(form, "event_id"),
        data,
        _values(form),
    )


@router.post("/episodes/{episode_id}/alerts/ack")
async def acknowledge_alert(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    form = await _form(request)
    data = {"alert_id": _text(form, "alert_id"), "by": user.subject}
    response = await _submit(
        request,
        user,
        episode_id,
        "ack",
        "mispers.alert.acknowledged",
        _text(form, "event_id"),
        data,
        _values(form),
    )
    back = _text(form, "back")
    if back == "alerts" and response.status_code == 303:
        return RedirectResponse("/ui/alerts?acknowledged=1", status_code=303)
    return response


@router.post("/episodes/{episode_id}/closure/request")
async def request_closure(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    form = await _form(request)
    data = {"officer_id": user.subject, "rationale": _text(form, "rationale")}
    return await _submit(
        request,
        user,
        episode_id,
        "closure-request",
        "mispers.closure.requested",
        _text(form, "event_id"),
        data,
        _values(form),
    )


@router.post("/episodes/{episode_id}/closure/approve")
async def approve_closure(
    request: Request, _: Checked, user: Reader, episode_id: EpisodeId
) -> Response:
    """Only a supervisor sees this form; anyone else posting it is refused by the API's rule."""
    form = await _form(request)
    waivers = [
        {"obligation_id": key.removeprefix("waiver:"), "reason": value.strip()}
        for key, value in form.items()
        if key.startswith("waiver:") and isinstance(value, str) and value.strip()
    ]
    data = {
        "supervisor_id": user.subject,
        "rank": user.rank.value,
        "rationale": _text(form, "rationale"),
        "waivers": waivers,
    }
    return await _submit(
        request,
        user,
        episode_id,
        "closure-approval",
        "mispers.closure.approved",
        _text(form, "event_id"),
        data,
        _values(form),
    )
