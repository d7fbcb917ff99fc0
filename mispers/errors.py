"""Errors every layer may raise, kept in a leaf module so that raising one imports nothing else.

`mispers.config` reads settings and `mispers.engine.connection` checks the Temporal connection;
both refuse bad values with ConfigError, and neither should need the other to do so."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting that cannot be used; the message names the variable and the rule."""
