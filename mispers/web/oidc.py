"""Sign-in through the force's identity provider: OpenID Connect authorization code flow with
PKCE (S256), by authlib's OAuth 2 client; the ID token is checked with joserfc against the
provider's published keys (issuer, audience, expiry, nonce).

The flow's secrets (state, nonce, PKCE verifier) travel in a short-lived signed cookie of their
own, SameSite=Lax, because the provider's redirect back is a cross-site navigation on which the
SameSite=Strict session cookie is not sent."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mispers.domain.types import Rank, Role
from mispers.web.config import OidcSettings
from mispers.web.identity import UiUser, user_for

CALLBACK_PATH = "/ui/oidc/callback"
_DISCOVERY_TTL = 300.0


class OidcError(Exception):
    """Why the provider's answer signs nobody in (shown to the visitor)."""


class Provider:
    """The provider's discovery document and keys, fetched on first use and kept 5 minutes."""

    def __init__(self, settings: OidcSettings, redirect_uri: str) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._fetched > _DISCOVERY_TTL:
            url = f"{self.settings.issuer}/.well-known/openid-configuration"
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.get(url)
                answer.raise_for_status()
                metadata: dict[str, Any] = answer.json()
                keys = await http.get(metadata["jwks_uri"])
                keys.raise_for_status()
            metadata["_jwks"] = keys.json()
            self._metadata, self._fetched = metadata, time.monotonic()
        return self._metadata

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            redirect_uri=self.redirect_uri,
            scope="openid",
            code_challenge_method="S256",
            token_endpoint_auth_method=(
                "client_secret_basic" if self.settings.client_secret else "none"
            ),
            timeout=10,
        )

    async def start(self) -> tuple[str, dict[str, str]]:
        """The provider's authorization URL and the flow's secrets to keep until the callback."""
        metadata = await self.metadata()
        flow = {"state": generate_token(32), "nonce": generate_token(32)}
        flow["verifier"] = generate_token(64)
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=flow["state"],
                nonce=flow["nonce"],
                code_verifier=flow["verifier"],
            )
        return str(url), flow

    async def finish(self, flow: Mapping[str, str], code: str, state: str) -> UiUser:
        if not flow or state != flow.get("state"):
            raise OidcError("The sign-in did not start here, or took too long. Try again.")
        metadata = await self.metadata()
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=flow["verifier"],
                )
            except Exception as exc:
                raise OidcError(
                    f"The identity provider refused the sign-in ({type(exc).__name__})."
                ) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("The identity provider sent no ID token.")
        claims = self._verify(id_token, metadata, flow["nonce"])
        return self._user(claims)

    def _verify(self, id_token: str, metadata: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        try:
            keys = KeySet.import_key_set(metadata["_jwks"])
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "PS256", "ES256", "EdDSA"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError, KeyError) as exc:
            raise OidcError(f"The ID token failed its checks ({type(exc).__name__}).") from None
        return dict(decoded.claims)

    def _user(self, claims: Mapping[str, Any]) -> UiUser:
        role = _pick(claims.get(self.settings.role_claim), Role)
        if role is None:
            raise OidcError(
                f"Your account has no Mispers role (claim '{self.settings.role_claim}'). "
                "Ask your administrator."
            )
        rank = _pick(claims.get(self.settings.rank_claim), Rank)
        try:
            return user_for(str(claims["sub"]), role, rank, via="oidc")
        except ValueError:
            raise OidcError("The ID token's subject cannot be used.") from None


E = TypeVar("E", Role, Rank)


def _pick(value: Any, kind: type[E]) -> E | None:
    """A claim naming a role or rank, as a string or the first usable entry of a list."""
    values = value if isinstance(value, list) else [value]
    for item in values:
        try:
            return kind(str(item).lower())
        except ValueError:
            continue
    return None
