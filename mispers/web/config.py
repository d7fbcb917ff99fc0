"""The dashboard's settings, read from the same `MISPERS_*` variables as the rest (README)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from mispers.config import ConfigError, Settings


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str | None
    role_claim: str
    rank_claim: str


@dataclass(frozen=True)
class WebSettings:
    public_url: str
    idle: dt.timedelta
    tickets: bool
    oidc: OidcSettings | None

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


def web_settings(settings: Settings, env: Mapping[str, str] | None = None) -> WebSettings:
    env = settings.extra if env is None else env
    public = (env.get("MISPERS_PUBLIC_URL") or "").rstrip("/")
    if public and not public.startswith(("http://", "https://")):
        raise ConfigError(f"MISPERS_PUBLIC_URL={public!r}: must be an http(s) URL")
    public = public or f"http://{settings.http_host}:{settings.http_port}"
    raw_idle = env.get("MISPERS_UI_IDLE_MINUTES") or "30"
    try:
        idle = float(raw_idle)
    except ValueError:
        raise ConfigError(f"MISPERS_UI_IDLE_MINUTES={raw_idle!r}: must be a number") from None
    if not 0 < idle <= 24 * 60:
        raise ConfigError(f"MISPERS_UI_IDLE_MINUTES={raw_idle!r}: must be above 0, at most 1440")
    tickets = (env.get("MISPERS_UI_TICKETS") or "on").strip().lower()
    if tickets not in ("on", "off"):
        raise ConfigError(f"MISPERS_UI_TICKETS={tickets!r}: must be on or off")
    return WebSettings(
        public_url=public,
        idle=dt.timedelta(minutes=idle),
        tickets=tickets == "on",
        oidc=_oidc(env),
    )


def _oidc(env: Mapping[str, str]) -> OidcSettings | None:
    issuer = (env.get("MISPERS_OIDC_ISSUER") or "").rstrip("/")
    if not issuer:
        return None
    if not issuer.startswith(("http://", "https://")):
        raise ConfigError(f"MISPERS_OIDC_ISSUER={issuer!r}: must be an http(s) URL")
    client_id = env.get("MISPERS_OIDC_CLIENT_ID") or ""
    if not client_id:
        raise ConfigError("MISPERS_OIDC_ISSUER is set: set MISPERS_OIDC_CLIENT_ID too")
    return OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret=env.get("MISPERS_OIDC_CLIENT_SECRET") or None,
        role_claim=env.get("MISPERS_OIDC_ROLE_CLAIM") or "role",
        rank_claim=env.get("MISPERS_OIDC_RANK_CLAIM") or "rank",
    )
