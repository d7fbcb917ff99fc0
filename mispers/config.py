"""Runtime configuration from `MISPERS_*` environment variables (documented in the README).

Read once at start; a malformed value stops the process with a message naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mispers.domain.messages import TASK_QUEUE
from mispers.engine.connection import TemporalConnection, load_connection
from mispers.errors import ConfigError

__all__ = ["DEFAULT_WORKER_CACHE", "ConfigError", "Settings", "load_settings"]

DEFAULT_WORKER_CACHE = 800  # sized to memory: see `Settings.worker_cache`


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".mispers")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    embedded_temporal_port: int = 7233
    policy_path: Path | None = None
    time_scale: float = 1.0
    alert_webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str = "mispers@localhost"
    locations_of_concern: Path | None = None
    task_queue: str = TASK_QUEUE
    # The worker's own Prometheus endpoint (alerts raised by rank); unset = not served.
    worker_metrics_port: int | None = None
    # Where the API finds the worker's metrics to append to its own /metrics (`mispers dev`).
    worker_metrics_url: str | None = None
    # Workflows a worker keeps in memory. A wake of one not cached replays its history first;
    # each new cached episode holds about 0.4 MiB, more once it carries alerts: about 130 MiB
    # + 0.4 MiB per cached episode, and 491 MiB measured with 800 after 10,000 escalated
    # episodes (bench/README.md).
    worker_cache: int = DEFAULT_WORKER_CACHE
    # Where analytics records go: unset = a DuckDB file in the data dir; a directory = Parquet.
    analytics: str | None = None
    # False: closing episodes write no analytics record (to measure what the export costs).
    analytics_export: bool = True
    # TLS / mTLS / API key towards an external Temporal, checked and read once at start.
    connection: TemporalConnection = field(default_factory=TemporalConnection, repr=False)
    # Who is on duty for each rank (a CSV file); unset = every alert to MISPERS_ALERT_EMAIL_TO.
    rota: Path | None = None
    pagerduty_routing_key: str | None = field(default=None, repr=False)
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    # Where the signed acknowledgement links in alerts point (this API as people reach it).
    public_url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def embedded(self) -> bool:
        return not self.temporal_address

    @property
    def effective_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.embedded_temporal_port}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def temporal_db_path(self) -> Path:
        return self.data_dir / "temporal.db"


def _int(env: Mapping[str, str], name: str, default: int, lo: int = 1, hi: int = 65535) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return value


def _path(env: Mapping[str, str], name: str, must_exist: bool) -> Path | None:
    raw = env.get(name)
    if not raw:
        return None
    path = Path(raw)
    if must_exist and not path.is_file():
        raise ConfigError(f"{name}={raw!r}: no such file")
    return path


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw and not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r}: must be an http(s) URL")
    return raw


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ConfigError(f"{name}={env.get(name)!r}: must be on or off")
    return raw == "on"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    raw_scale = env.get("MISPERS_TIME_SCALE") or "1"
    try:
        time_scale = float(raw_scale)
    except ValueError:
        raise ConfigError(f"MISPERS_TIME_SCALE={raw_scale!r}: must be a number") from None
    if not 0 < time_scale <= 1_000_000:
        raise ConfigError(f"MISPERS_TIME_SCALE={raw_scale!r}: must be above 0 and at most 1e6")
    webhook = _url(env, "MISPERS_ALERT_WEBHOOK_URL")
    email_to = tuple(
        a.strip() for a in (env.get("MISPERS_ALERT_EMAIL_TO") or "").split(",") if a.strip()
    )
    for address in email_to:
        if "@" not in address:
            raise ConfigError(f"MISPERS_ALERT_EMAIL_TO: {address!r} is not an e-mail address")
    smtp_username = env.get("MISPERS_SMTP_USERNAME") or None
    smtp_password = env.get("MISPERS_SMTP_PASSWORD") or None
    if bool(smtp_username) != bool(smtp_password):
        raise ConfigError("MISPERS_SMTP_USERNAME and MISPERS_SMTP_PASSWORD go together: set both")
    # Temporal TLS / mTLS / API key (mispers/engine/connection.py): checked here, at start.
    connection = load_connection(env)
    return Settings(
        data_dir=Path(env.get("MISPERS_DATA_DIR") or ".mispers"),
        http_host=env.get("MISPERS_HTTP_HOST") or "127.0.0.1",
        http_port=_int(env, "MISPERS_HTTP_PORT", 8000),
        temporal_address=env.get("MISPERS_TEMPORAL_ADDRESS") or None,
        temporal_namespace=env.get("MISPERS_TEMPORAL_NAMESPACE") or "default",
        embedded_temporal_port=_int(env, "MISPERS_EMBEDDED_TEMPORAL_PORT", 7233, hi=64535),
        policy_path=_path(env, "MISPERS_POLICY", must_exist=False),
        time_scale=time_scale,
        alert_webhook_url=webhook,
        smtp_host=env.get("MISPERS_SMTP_HOST") or None,
        smtp_port=_int(env, "MISPERS_SMTP_PORT", 25),
        alert_email_to=email_to,
        alert_email_from=env.get("MISPERS_ALERT_EMAIL_FROM") or "mispers@localhost",
        locations_of_concern=_path(env, "MISPERS_LOCATIONS_OF_CONCERN", must_exist=False),
        task_queue=env.get("MISPERS_TASK_QUEUE") or TASK_QUEUE,
        smtp_username=smtp_username,
        smtp_password=smtp_password,
        worker_metrics_port=(
            _int(env, "MISPERS_WORKER_METRICS_PORT", 0)
            if env.get("MISPERS_WORKER_METRICS_PORT")
            else None
        ),
        worker_metrics_url=_url(env, "MISPERS_WORKER_METRICS_URL"),
        worker_cache=_int(env, "MISPERS_WORKER_CACHE", DEFAULT_WORKER_CACHE, lo=0, hi=1_000_000),
        analytics=env.get("MISPERS_ANALYTICS") or None,
        analytics_export=_switch(env, "MISPERS_ANALYTICS_EXPORT", True),
        connection=connection,
        rota=_path(env, "MISPERS_ROTA", must_exist=False),
        pagerduty_routing_key=env.get("MISPERS_PAGERDUTY_ROUTING_KEY") or None,
        pagerduty_url=_url(env, "MISPERS_PAGERDUTY_URL")
        or "https://events.pagerduty.com/v2/enqueue",
        public_url=_url(env, "MISPERS_PUBLIC_URL"),
        extra={k: v for k, v in env.items() if k.startswith("MISPERS_")},
    )
