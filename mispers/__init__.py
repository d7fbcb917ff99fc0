"""Mispers: every missing-child episode as a durable Temporal workflow."""

__version__ = "0.1.0"
