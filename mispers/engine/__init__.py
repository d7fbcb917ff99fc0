"""Talking to Temporal: the embedded dev server, the client, search attributes."""
