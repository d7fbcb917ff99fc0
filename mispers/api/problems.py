"""RFC 7807 problem answers: the one shape every refusal of the API takes.

Clients branch on `type` (a stable URN) and `status`; people read `title` and `detail`. Field
problems name the field path and the rule broken, never the value sent: an event may carry a
child's name or date of birth, and error answers end up in logs on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mispers.domain.refusals import AUTHORITY, Refusal
from mispers.logs import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:mispers:problem:"

log = get_logger("mispers.api")


class FieldProblem(BaseModel):
    """One broken rule: where (`field`, dotted path) and which (`rule`), without the value."""

    field: str = Field(description="Dotted path of the field, e.g. data.child.date_of_birth.")
    rule: str = Field(description="Machine-readable rule name (pydantic error type or ours).")
    message: str = Field(description="The rule in words; never contains the value sent.")
    constraints: dict[str, str | int | float | bool] | None = None


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="A stable URN naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None
    refusal: Refusal | None = Field(
        None,
        description="On 409 (and on 403 from the episode): the rule that refused the event "
        "(code, message, details, kind).",
    )
    required_role: str | None = None
    episode_id: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class ProblemError(Exception):
    """Raised anywhere in a request; answered as problem+json by the handler below."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(problem.title)
        self.problem = problem
        self.headers = headers
        self.audited = False  # a refusal of access is recorded once (api/access.py)

    @property
    def reason(self) -> str:
        """A short label for metrics: the refusal code, else the problem kind."""
        if self.problem.refusal is not None:
            return self.problem.refusal.code[:64]
        return self.problem.type.removeprefix(_TYPE_PREFIX)


def problem(
    status: int, kind: str, title: str, detail: str | None = None, **extra: Any
) -> ProblemError:
    return ProblemError(
        Problem(type=_TYPE_PREFIX + kind, title=title, status=status, detail=detail, **extra)
    )


# The kinds of problem the API answers, one constructor each so wording stays consistent.


def malformed(detail: str) -> ProblemError:
    return problem(400, "malformed", "Malformed request body", detail)


def invalid_envelope(detail: str, errors: list[FieldProblem] | None = None) -> ProblemError:
    return problem(400, "invalid-envelope", "Not a valid CloudEvent", detail, errors=errors)


def invalid_event(errors: list[FieldProblem]) -> ProblemError:
    detail = "; ".join(f"{e.field or '(event)'}: {e.message}" for e in errors[:5])
    return problem(422, "invalid-event", "The event breaks a field rule", detail, errors=errors)


def invalid_parameter(errors: list[FieldProblem]) -> ProblemError:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    return problem(
        422, "invalid-parameter", "A request parameter breaks a rule", detail, errors=errors
    )


def unsupported_media_type(detail: str) -> ProblemError:
    return problem(415, "unsupported-media-type", "Unsupported content type", detail)


def too_large(limit: int) -> ProblemError:
    return problem(413, "too-large", "Request body too large", f"the limit is {limit} bytes")


def unauthorized(detail: str) -> ProblemError:
    err = problem(401, "unauthorized", "A valid bearer token is required", detail)
    err.headers = {"WWW-Authenticate": 'Bearer realm="mispers"'}
    return err


def forbidden(detail: str, required_role: str | None = None) -> ProblemError:
    return problem(
        403, "forbidden", "The token's role may not do this", detail, required_role=required_role
    )


def not_found(kind: str, detail: str, **extra: Any) -> ProblemError:
    return problem(404, kind, "Not found", detail, **extra)


def refused(refusal: Refusal) -> ProblemError:
    """The episode's refusal: 403 when the sender's authority is refused (the refusal's code
    names the rule, e.g. `rank_above_token`), else 409."""
    if refusal.kind == AUTHORITY:
        required = refusal.details.get("required_role")
        return problem(
            403,
            "forbidden",
            "The token's role or rank may not do this",
            refusal.message,
            refusal=refusal,
            required_role=required if isinstance(required, str) else None,
        )
    return problem(
        409, "refused", "The episode's rules refuse this event", refusal.message, refusal=refusal
    )


def engine_unavailable(detail: str) -> ProblemError:
    err = problem(503, "engine-unavailable", "The workflow engine is unavailable", detail)
    err.headers = {"Retry-After": "1"}
    return err


def problem_response(err: ProblemError) -> JSONResponse:
    return JSONResponse(
        err.problem.to_json(),
        status_code=err.problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=err.headers,
    )


def install_handlers(app: FastAPI) -> None:
    """Every error the framework raises leaves as problem+json, so clients parse one shape."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc)

    async def on_request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # ("query", "risk") -> "risk": the location is in the schema, the name suffices.
        return problem_response(invalid_parameter(field_problems(exc.errors(), drop_prefix=1)))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        err = problem(exc.status_code, kind, _http_title(exc.status_code), str(exc.detail))
        err.headers = dict(exc.headers) if exc.headers else None
        return problem_response(err)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The message may quote input; log where it happened and its type only.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error(
            "unexpected error",
            error_type=type(exc).__name__,
            where=where,
            method=request.method,
            path=request.url.path,
        )
        return problem_response(
            problem(500, "internal", "Internal error", "the error was logged; retrying is safe")
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _http_title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


# Pydantic error types whose message quotes the input: answered with our own wording.
_QUOTING_TYPES = {
    "union_tag_invalid": "must be one of the tags listed in constraints",
    "union_tag_not_found": "the discriminator field is missing",
}
# ctx keys that describe the rule (from the schema), never the value sent.
_RULE_CTX_KEYS = (
    "pattern",
    "min_length",
    "max_length",
    "expected",
    "expected_tags",
    "discriminator",
    "ge",
    "gt",
    "le",
    "lt",
    "multiple_of",
)


def safe_message(err: Mapping[str, Any]) -> str:
    """Pydantic's message unless it could quote the input value."""
    kind = str(err.get("type", ""))
    if kind in _QUOTING_TYPES:
        return _QUOTING_TYPES[kind]
    message = str(err.get("msg", "invalid"))
    value = err.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 2 and text in message:
            return f"breaks the rule '{kind}'"
    return message


def field_problems(errors: Iterable[Mapping[str, Any]], drop_prefix: int = 0) -> list[FieldProblem]:
    """Pydantic errors as field problems; `drop_prefix` removes leading `loc` parts that are not
    fields (the union tag, the request location)."""
    problems = []
    for err in errors:
        loc = tuple(err.get("loc", ()))[drop_prefix:]
        ctx = err.get("ctx") or {}
        constraints = {
            key: value if isinstance(value, str | int | float | bool) else str(value)
            for key in _RULE_CTX_KEYS
            if (value := ctx.get(key)) is not None
        }
        problems.append(
            FieldProblem(
                field=".".join(_field_part(part) for part in loc),
                rule=str(err.get("type", "invalid")),
                message=safe_message(err),
                constraints=constraints or None,
            )
        )
    return problems


def _field_part(part: Any) -> str:
    """Field names come from the schema, except unknown ones sent by the client: those are
    cut short so an answer cannot be made to carry a long text."""
    text = str(part)
    return text if len(text) <= 64 else text[:61] + "..."
