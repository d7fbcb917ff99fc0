"""What every request needs: settings, the pinned policy, the token secret, and a Temporal client
connected on first use (so the API starts, and answers /healthz, while the engine is down)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from mispers.api.access import request_purpose
from mispers.api.auth import Action, authorize, bearer_token, verify_token
from mispers.api.problems import FieldProblem, engine_unavailable, invalid_parameter
from mispers.config import Settings
from mispers.domain.events import Actor
from mispers.engine.client import connect
from mispers.logs import get_logger
from mispers.policy import PinnedPolicy, pinned_policy
from mispers.security.audit import PURPOSE_HEADER

log = get_logger("mispers.api")

CONNECT_TIMEOUT = 5.0


class ApiContext:
    def __init__(self, settings: Settings, secret: bytes, client: Client | None = None) -> None:
        self.settings = settings
        self.secret = secret
        # Pinned once: every episode this process starts records the same policy version.
        path = str(settings.policy_path) if settings.policy_path else None
        self.policy: PinnedPolicy = pinned_policy(path, settings.time_scale)
        self._client = client
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def client(self) -> Client:
        """The engine client; ProblemError 503 if it cannot be reached now (the next request
        tries again, so the API recovers by itself when the engine comes back)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        self._client = await connect(self.settings)
                except Exception as exc:
                    log.warning(
                        "engine connection failed",
                        address=self.settings.effective_temporal_address,
                        error_type=type(exc).__name__,
                    )
                    raise engine_unavailable(
                        f"cannot connect to Temporal at {self.settings.effective_temporal_address}"
                        f" ({type(exc).__name__})"
                    ) from None
                log.info("engine connected", address=self.settings.effective_temporal_address)
        return self._client


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.mispers
    return context


# Declares the scheme in the OpenAPI description; the checks themselves are `require`'s, so the
# answers (401 with WWW-Authenticate, 403 naming the roles) are ours and not the framework's.
bearer_scheme = HTTPBearer(
    auto_error=False, description="A token from `mispers token --role ROLE --subject ID`."
)


def require(action: Action) -> Callable[..., Actor]:
    """A dependency answering 401/403 before the endpoint runs (and before a body is read)."""

    def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Actor:
        actor = verify_token(
            get_context(request).secret, bearer_token(request.headers.get("authorization"))
        )
        request.state.actor = actor  # a refusal from here on is audited under the caller's name
        authorize(actor, action)
        try:
            request_purpose(request)
        except ValueError as exc:
            raise invalid_parameter(
                [FieldProblem(field=PURPOSE_HEADER, rule="max_length", message=str(exc))]
            ) from None
        return actor

    return dependency
