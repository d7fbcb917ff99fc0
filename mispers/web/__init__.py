"""The supervisors' dashboard: server-rendered GOV.UK pages under /ui, mounted by the API app.

The pages have no powers of their own: they read through the API's read functions and record
decisions as CloudEvents through the API's ingest path, as the signed-in person."""

from mispers.web.app import mount_web

__all__ = ["mount_web"]
