"""Tokens, the signing secret, and the role matrix of docs/contract.md as pure functions."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import jwt
import pytest

from mispers.api.auth import (
    ALGORITHM,
    PERMISSIONS,
    SECRET_ENV,
    SECRET_FILE,
    Action,
    SecretError,
    authorize,
    authorize_ack_by,
    authorize_event_type,
    authorize_risk_change,
    bearer_token,
    load_secret,
    mint_token,
    verify_token,
)
from mispers.api.problems import ProblemError
from mispers.config import Settings
from mispers.domain.events import EVENT_MODELS, Actor
from mispers.domain.types import RiskLevel, Role

SECRET = b"s" * 40


def status_of(call: object) -> int:
    assert callable(call)
    try:
        call()
    except ProblemError as err:
        return err.problem.status
    return 200


def test_secret_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_secret(settings, env={})
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(settings, env={}) == first
    assert len(first) >= 32
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no draft left


def test_secret_from_the_environment_wins(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert load_secret(settings, env={SECRET_ENV: "x" * 32}) == b"x" * 32
    assert not (tmp_path / SECRET_FILE).exists()
    with pytest.raises(SecretError, match=SECRET_ENV):
        load_secret(settings, env={SECRET_ENV: "short"})


def test_a_truncated_secret_file_is_an_error_not_a_weak_key(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("abc")
    with pytest.raises(SecretError, match="shorter"):
        load_secret(Settings(data_dir=tmp_path), env={})


def test_minted_token_verifies_to_its_subject_and_role() -> None:
    token = mint_token(SECRET, Role.OFFICER, "PC-101")
    assert verify_token(SECRET, token) == Actor(subject="PC-101", role=Role.OFFICER)
    claims = jwt.decode(token, SECRET, algorithms=[ALGORITHM])
    assert claims["exp"] - claims["iat"] == 12 * 3600


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (mint_token(b"o" * 40, Role.SUPERVISOR, "x"), "signature"),
        (
            mint_token(
                SECRET,
                Role.OFFICER,
                "x",
                dt.timedelta(seconds=1),
                now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            ),
            "expired",
        ),
        (jwt.encode({"sub": "x"}, SECRET, algorithm=ALGORITHM), "'role'"),
        (jwt.encode({"role": "officer"}, SECRET, algorithm=ALGORITHM), "'sub'"),
        (jwt.encode({"sub": "x", "role": "chief"}, SECRET, algorithm=ALGORITHM), "role"),
        (jwt.encode({"sub": "", "role": "officer"}, SECRET, algorithm=ALGORITHM), "role"),
        (
            jwt.encode(
                {"sub": "x", "role": "officer", "iss": "other"}, SECRET, algorithm=ALGORITHM
            ),
            "issued",
        ),
        (jwt.encode({"sub": "x", "role": "supervisor"}, "", algorithm="none"), "valid"),
        ("not-a-jwt", "valid"),
    ],
)
def test_bad_tokens_are_401_saying_why(token: str, why: str) -> None:
    with pytest.raises(ProblemError) as caught:
        verify_token(SECRET, token)
    assert caught.value.problem.status == 401
    assert why in (caught.value.problem.detail or "")
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="mispers"'}


def test_token_without_expiry_is_accepted() -> None:
    """Tokens signed by other tools (PyJWT with the shared secret) need not carry `exp`."""
    token = jwt.encode({"sub": "cad", "role": "system"}, SECRET, algorithm=ALGORITHM)
    assert verify_token(SECRET, token).role is Role.SYSTEM


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_authorization_header_must_be_bearer(header: str | None) -> None:
    assert status_of(lambda: bearer_token(header)) == 401


ROLE_MATRIX = {
    # action: roles allowed (docs/contract.md, "Roles")
    Action.SEND_EVENTS: {Role.SYSTEM, Role.OFFICER, Role.SUPERVISOR},
    Action.READ: {Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR},
    Action.DESCRIBE: set(Role),
    Action.REPORT: {Role.SUPERVISOR, Role.AUDITOR},
    Action.HANDLE_ALERTS: {Role.OFFICER, Role.SUPERVISOR},
}


@pytest.mark.parametrize("role", list(Role))
def test_an_acknowledgement_is_the_token_subjects_own(role: Role) -> None:
    actor = Actor(subject="SGT-1", role=role)
    assert status_of(lambda: authorize_ack_by(actor, "SGT-1")) == 200
    expected = 200 if role is Role.SYSTEM else 403
    assert status_of(lambda: authorize_ack_by(actor, "INSP-2")) == expected


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_role_matrix(action: Action, role: Role) -> None:
    actor = Actor(subject="x", role=role)
    expected = 200 if role in ROLE_MATRIX[action] else 403
    assert status_of(lambda: authorize(actor, action)) == expected
    assert (role in PERMISSIONS[action]) == (role in ROLE_MATRIX[action])


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
@pytest.mark.parametrize("role", [Role.SYSTEM, Role.OFFICER, Role.SUPERVISOR])
def test_only_supervisors_approve_closure(event_type: str, role: Role) -> None:
    actor = Actor(subject="x", role=role)
    supervisor_decision = event_type == "mispers.closure.approved"
    expected = 403 if supervisor_decision and role is not Role.SUPERVISOR else 200
    assert status_of(lambda: authorize_event_type(actor, event_type)) == expected


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(
    ("current", "new"),
    [
        (RiskLevel.HIGH, RiskLevel.MEDIUM),
        (RiskLevel.MEDIUM, RiskLevel.HIGH),
        (RiskLevel.MEDIUM, RiskLevel.MEDIUM),
        (None, RiskLevel.LOW),
    ],
)
def test_only_supervisors_lower_risk(role: Role, current: RiskLevel | None, new: RiskLevel) -> None:
    actor = Actor(subject="x", role=role)
    downgrade = current is not None and new < current
    expected = 403 if downgrade and role is not Role.SUPERVISOR else 200
    assert status_of(lambda: authorize_risk_change(actor, current, new)) == expected
