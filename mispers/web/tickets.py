"""One-time sign-in links for the embedded default (`mispers open`).

A ticket is a short JWT under the token secret (so only someone holding that secret, who could
mint API tokens anyway, can make one) with a random id. Redeeming it creates a marker file named
by that id with O_EXCL in the data directory: a second use fails there, across restarts and
across replicas sharing the directory. Markers older than any ticket's lifetime are swept."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from pathlib import Path

import jwt
from pydantic import ValidationError

from mispers.domain.types import Rank, Role
from mispers.web.identity import UiUser, user_for

TICKET_TTL = dt.timedelta(minutes=5)
AUDIENCE = "mispers-ui-signin"
USED_DIR = "ui-tickets-used"
_MAX_TTL = dt.timedelta(minutes=15)


class TicketError(Exception):
    """Why a ticket cannot sign anyone in (shown to the visitor; never echoes the ticket)."""


def mint_ticket(
    secret: bytes,
    role: Role,
    subject: str,
    rank: Rank | None = None,
    ttl: dt.timedelta = TICKET_TTL,
    now: dt.datetime | None = None,
) -> str:
    if ttl > _MAX_TTL:
        raise ValueError(f"a sign-in ticket lives at most {_MAX_TTL}")
    user = user_for(subject, role, rank, via="ticket")  # the rules a redeemed one must meet
    issued = now or dt.datetime.now(dt.UTC)
    claims = {
        "sub": user.subject,
        "role": user.role.value,
        "rank": user.rank.value,
        "aud": AUDIENCE,
        "jti": secrets.token_urlsafe(16),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def redeem_ticket(secret: bytes, ticket: str, used_dir: Path) -> UiUser:
    """The person the ticket signs in; it cannot sign anyone in again."""
    user, jti = _open(secret, ticket)
    _mark_used(used_dir, jti)
    return user


def peek_ticket(secret: bytes, ticket: str, used_dir: Path) -> UiUser:
    """Who the ticket would sign in, without using it (the confirmation page)."""
    user, jti = _open(secret, ticket)
    if (used_dir / _marker_name(jti)).exists():
        raise TicketError(_USED)
    return user


_USED = "This sign-in link has already been used. Ask for a new one."


def _open(secret: bytes, ticket: str) -> tuple[UiUser, str]:
    try:
        claims = jwt.decode(
            ticket,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["sub", "role", "rank", "jti", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise TicketError("This sign-in link has expired. Ask for a new one.") from None
    except jwt.PyJWTError:
        raise TicketError("This sign-in link is not one Mispers issued.") from None
    try:
        user = user_for(claims["sub"], Role(claims["role"]), Rank(claims["rank"]), via="ticket")
    except (ValueError, ValidationError):
        raise TicketError("This sign-in link is not one Mispers issued.") from None
    return user, str(claims["jti"])


def _marker_name(jti: str) -> str:
    return "".join(c for c in jti if c.isalnum() or c in "-_") or "-"


def _mark_used(used_dir: Path, jti: str) -> None:
    used_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _sweep(used_dir)
    try:
        fd = os.open(used_dir / _marker_name(jti), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TicketError(_USED) from None
    os.close(fd)


def _sweep(used_dir: Path) -> None:
    cutoff = time.time() - 2 * _MAX_TTL.total_seconds()
    for marker in used_dir.iterdir():
        try:
            if marker.stat().st_mtime < cutoff:
                marker.unlink()
        except FileNotFoundError:
            pass
