"""Bearer tokens and the role matrix of the contract (docs/contract.md, "Roles").

HS256 with one shared secret keeps the embedded set-up to a single file (or
`MISPERS_JWT_SECRET` when several API replicas must agree). The matrix is data, so the tests can
walk it and the OpenAPI description can state it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import jwt
from pydantic import ValidationError

from mispers.api.problems import forbidden, unauthorized
from mispers.config import Settings
from mispers.domain.events import SUPERVISOR_ONLY_TYPES, Actor
from mispers.domain.types import RiskLevel, Role

ALGORITHM = "HS256"
ISSUER = "mispers"
SECRET_ENV = "MISPERS_JWT_SECRET"
SECRET_FILE = "jwt-secret"
DEFAULT_TTL = dt.timedelta(hours=12)
_MIN_SECRET_BYTES = 32


class Action(StrEnum):
    SEND_EVENTS = "send_events"
    READ = "read"
    DESCRIBE = "describe"
    REPORT = "report"
    HANDLE_ALERTS = "handle_alerts"


# Who may do what (docs/contract.md, "Roles").
PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.SEND_EVENTS: frozenset({Role.SYSTEM, Role.OFFICER, Role.SUPERVISOR}),
    Action.READ: frozenset({Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR}),
    Action.REPORT: frozenset({Role.SUPERVISOR, Role.AUDITOR}),
    # The contract and the counters, no episode data: any authenticated caller (a metrics
    # scraper or an incident source checking the event schemas holds some token).
    Action.DESCRIBE: frozenset(Role),
    # The people paged: list alerts and acknowledge them.
    Action.HANDLE_ALERTS: frozenset({Role.OFFICER, Role.SUPERVISOR}),
}


class SecretError(Exception):
    """The signing secret cannot be read or created; the message names the file or variable."""


def load_secret(settings: Settings, env: Mapping[str, str] | None = None) -> bytes:
    """`MISPERS_JWT_SECRET`, else `$MISPERS_DATA_DIR/jwt-secret`, created (0600) on first use."""
    env = os.environ if env is None else env
    given = env.get(SECRET_ENV)
    if given:
        if len(given.encode()) < _MIN_SECRET_BYTES:
            raise SecretError(f"{SECRET_ENV} must be at least {_MIN_SECRET_BYTES} bytes long")
        return given.encode()
    return _secret_file(settings.data_dir / SECRET_FILE)


def _secret_file(path: Path) -> bytes:
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a process starting at the same moment either
        # finds no file or the whole secret, and link() lets exactly one of them win.
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    except OSError as exc:
        raise SecretError(f"{path}: cannot create the token secret: {exc.strerror}") from None
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        value = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the token secret: {exc.strerror}") from None
    if len(value) < _MIN_SECRET_BYTES:
        raise SecretError(f"{path}: the token secret is shorter than {_MIN_SECRET_BYTES} bytes")
    return value


def mint_token(
    secret: bytes,
    role: Role,
    subject: str,
    ttl: dt.timedelta | None = DEFAULT_TTL,
    now: dt.datetime | None = None,
) -> str:
    actor = Actor(subject=subject, role=role)  # the same rules a verified token must meet
    issued = now or dt.datetime.now(dt.UTC)
    claims: dict[str, object] = {
        "sub": actor.subject,
        "role": actor.role.value,
        "iss": ISSUER,
        "iat": int(issued.timestamp()),
    }
    if ttl is not None:
        claims["exp"] = int((issued + ttl).timestamp())
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str) -> Actor:
    """The token's subject and role, or ProblemError 401 saying why (never echoing the token)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "role"]},
            leeway=dt.timedelta(seconds=30),
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired") from None
    except jwt.InvalidSignatureError:
        raise unauthorized("the token's signature does not match this service's secret") from None
    except jwt.MissingRequiredClaimError as exc:
        raise unauthorized(f"the token has no '{exc.claim}' claim") from None
    except jwt.PyJWTError:
        raise unauthorized("the token is not a valid HS256 JWT") from None
    if claims.get("iss", ISSUER) != ISSUER:
        raise unauthorized("the token was issued for another service")
    try:
        return Actor(subject=claims["sub"], role=claims["role"])
    except ValidationError:
        roles = ", ".join(r.value for r in Role)
        raise unauthorized(
            f"the token's role must be one of {roles}, with a short subject"
        ) from None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("send 'Authorization: Bearer <token>' (see `mispers token`)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must use the Bearer scheme")
    return token.strip()


def authorize(actor: Actor, action: Action) -> None:
    allowed = PERMISSIONS[action]
    if actor.role not in allowed:
        roles = ", ".join(sorted(r.value for r in allowed))
        raise forbidden(f"role '{actor.role.value}' may not {action.value}; allowed: {roles}")


def authorize_event_type(actor: Actor, event_type: str) -> None:
    """Supervisor decisions (closure approval, hence waivers) need the supervisor role."""
    if event_type in SUPERVISOR_ONLY_TYPES and actor.role is not Role.SUPERVISOR:
        raise forbidden(
            f"{event_type} is a supervisor decision; role '{actor.role.value}' may not send it",
            required_role=Role.SUPERVISOR.value,
        )


def authorize_risk_change(actor: Actor, current: RiskLevel | None, new: RiskLevel) -> None:
    """A downgrade needs a supervisor; raising risk never waits for one (it only adds safety)."""
    if current is not None and new < current and actor.role is not Role.SUPERVISOR:
        raise forbidden(
            f"lowering the risk from {current.value} to {new.value} needs the supervisor role",
            required_role=Role.SUPERVISOR.value,
        )


def authorize_ack_by(actor: Actor, by: str) -> None:
    """An acknowledgement is a person's promise: only they may make it (an incident source,
    `system`, relays acknowledgements made elsewhere)."""
    if actor.role is not Role.SYSTEM and by != actor.subject:
        raise forbidden(
            f"an acknowledgement's 'by' must be the token's subject ({actor.subject}); "
            f"role '{actor.role.value}' may not acknowledge for someone else",
        )


def needs_risk_check(actor: Actor, event_type: str) -> bool:
    return event_type == "mispers.risk.assessed" and actor.role is not Role.SUPERVISOR


__all__ = [
    "PERMISSIONS",
    "Action",
    "SecretError",
    "authorize",
    "authorize_ack_by",
    "authorize_event_type",
    "authorize_risk_change",
    "bearer_token",
    "load_secret",
    "mint_token",
    "needs_risk_check",
    "verify_token",
]
