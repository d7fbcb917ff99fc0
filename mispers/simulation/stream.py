"""An episode's event stream without personal data: what the analytics store keeps so a policy
simulation can re-apply each episode as it happened.

Kept: event ids, types, times, the instant each was recorded, refs, ranks, levels, flags,
purposes, outcomes from closed vocabularies and officer ids. Not kept: names, free text
(rationales, summaries, narratives, contact names) and place descriptions. Fields the rules
read are reduced instead of dropped: local authorities become pseudonyms (equal where the rules
see the same authority); the date of birth becomes the date that gives the child the same age
in years from the day of the report (the exact date is not kept); each postcode becomes a
one-way pseudonym (`place_pseudonym`) that still matches itself across a child's episodes and
matches the register of locations of concern once the register is put through the same
function. Pure: the workflow builds it at close."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from typing import Any

from pydantic import BaseModel

from mispers.domain.events import EVENT_MODELS, PERSONAL_MARK
from mispers.domain.locations import LocationOfConcern, postcode_key
from mispers.domain.people import age_on
from mispers.domain.state import EpisodeState

NOT_KEPT = "not kept"
_PLACE_SALT = b"mispers-place:"
_AUTHORITY_SALT = b"mispers-authority:"
_AUTHORITY_FIELDS = ("responsible_authority", "host_authority", "authority")


def place_pseudonym(postcode: str | None) -> str | None:
    key = postcode_key(postcode)
    if key is None:
        return None
    return "PL" + hashlib.sha256(_PLACE_SALT + key.encode()).hexdigest()[:14].upper()


def authority_pseudonym(authority: str) -> str:
    """Equal for names the rules treat as the same authority (case and spacing aside)."""
    key = " ".join(authority.lower().split())
    return "LA" + hashlib.sha256(_AUTHORITY_SALT + key.encode()).hexdigest()[:10].upper()


def pseudonymous_register(
    register: dict[str, list[LocationOfConcern]],
) -> dict[str, list[LocationOfConcern]]:
    """The register keyed (and its entries' keys) by the pseudonyms the stream carries."""
    out: dict[str, list[LocationOfConcern]] = {}
    for key, entries in register.items():
        pseudo = place_pseudonym(key)
        assert pseudo is not None
        out[pseudo] = [e.model_copy(update={"postcode_key": pseudo}) for e in entries]
    return out


def _same_age_birth_date(date_of_birth: str, on: dt.date) -> str:
    born = dt.date.fromisoformat(date_of_birth)
    age = age_on(born, on)
    try:
        return on.replace(year=on.year - age).isoformat()
    except ValueError:  # 29 February
        return on.replace(year=on.year - age, day=28).isoformat()


@functools.cache
def _fields(model: type[BaseModel]) -> list[tuple[str, bool, type[BaseModel] | None]]:
    """Each field of `model`: its name, whether it is marked personal, the model inside it.
    Read once per model: a year's streams scrub millions of event bodies."""
    out: list[tuple[str, bool, type[BaseModel] | None]] = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out.append((name, bool(extra.get(PERSONAL_MARK)), _model_of(info.annotation)))
    return out


def _scrub(model: type[BaseModel], value: dict[str, Any], reported_on: dt.date) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, personal, nested in _fields(model):
        if name not in value:
            continue
        item = value[name]
        if personal:
            if item is None:
                out[name] = None
            elif name == "date_of_birth":
                out[name] = _same_age_birth_date(item, reported_on)
            elif name == "postcode":
                out[name] = place_pseudonym(item)
            elif name in ("name", "description"):
                continue
            else:
                out[name] = NOT_KEPT
        elif name in _AUTHORITY_FIELDS and isinstance(item, str):
            out[name] = authority_pseudonym(item)
        elif nested is not None and isinstance(item, dict):
            out[name] = _scrub(nested, item, reported_on)
        elif nested is not None and isinstance(item, list):
            out[name] = [_scrub(nested, i, reported_on) if isinstance(i, dict) else i for i in item]
        else:
            out[name] = item
    return out


@functools.cache
def _data_model(event_model: type[BaseModel]) -> type[BaseModel]:
    found = _model_of(event_model.model_fields["data"].annotation)
    assert found is not None
    return found


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `Model`, `Model | None` or `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def pii_free_stream(state: EpisodeState) -> list[dict[str, Any]]:
    """The accepted events of `state` in the order they were recorded, as CloudEvents bodies
    (plus `recorded_at`) with personal data removed or reduced."""
    entries = sorted(state.timeline, key=lambda e: e.recorded_at)
    if not entries:
        return []
    reported_on = (state.reported_at or entries[0].time).date()
    out: list[dict[str, Any]] = []
    for entry in entries:
        model = EVENT_MODELS.get(entry.type)
        if model is None:
            continue
        data_model = _data_model(model)
        body: dict[str, Any] = {
            "id": entry.event_id,
            "source": entry.source,
            "type": entry.type,
            "subject": state.episode_id,
            "time": entry.time.isoformat(),
            "recorded_at": entry.recorded_at.isoformat(),
            "data": _scrub(data_model, entry.data, reported_on),
        }
        if entry.posted_by is not None:
            body["actor"] = entry.posted_by.model_dump(mode="json")
        out.append(body)
    return out
