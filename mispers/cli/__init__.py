"""The `mispers` console script. Each submodule registers its commands on `app`."""

from mispers.cli import alerts as _alerts  # noqa: F401  (registers alerts list|ack)
from mispers.cli import analytics as _analytics  # noqa: F401  (registers synth, export, report)
from mispers.cli import engine as _engine  # noqa: F401  (registers dev, worker)
from mispers.cli import events as _events  # noqa: F401  (registers api, token, send, episodes)
from mispers.cli import health as _health  # noqa: F401  (registers worker-health)
from mispers.cli import security as _security  # noqa: F401  (registers keys, audit)
from mispers.cli import simulate as _simulate  # noqa: F401  (registers simulate)
from mispers.cli import web as _web  # noqa: F401  (registers open)
from mispers.cli.app import app

__all__ = ["app"]
