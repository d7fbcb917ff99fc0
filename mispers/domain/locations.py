"""Locations of concern: postcode matching and the register's CSV format (pure parsing)."""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import BaseModel, ConfigDict

Category = Literal["registered_sex_offender", "exploitation", "other"]
CATEGORIES: tuple[str, ...] = ("registered_sex_offender", "exploitation", "other")
EXPLOITATION_CATEGORIES = frozenset({"registered_sex_offender", "exploitation"})
HEADER = ["postcode", "category", "reference"]


def postcode_key(postcode: str | None) -> str | None:
    """Postcodes compare without case or spaces, as the register's users write them either way."""
    if not postcode:
        return None
    key = "".join(postcode.split()).upper()
    return key or None


class LocationOfConcern(BaseModel):
    model_config = ConfigDict(frozen=True)

    postcode_key: str
    category: Category
    reference: str


class RegisterError(Exception):
    """A malformed register: the message names the line and the reason (never the content)."""


def parse_register(
    text: str, source: str = "locations register"
) -> dict[str, list[LocationOfConcern]]:
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    if not rows:
        raise RegisterError(f"{source}: line 1: empty file; expected header {','.join(HEADER)}")
    header = [h.strip().lower() for h in rows[0]]
    if header != HEADER:
        raise RegisterError(f"{source}: line 1: header must be exactly {','.join(HEADER)}")
    register: dict[str, list[LocationOfConcern]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise RegisterError(f"{source}: line {number}: expected 3 fields, found {len(row)}")
        postcode, category, reference = (cell.strip() for cell in row)
        key = postcode_key(postcode)
        if key is None or not key.isalnum() or not 5 <= len(key) <= 8:
            raise RegisterError(f"{source}: line {number}: postcode is not a UK postcode")
        if category not in CATEGORIES:
            raise RegisterError(
                f"{source}: line {number}: category must be one of {', '.join(CATEGORIES)}"
            )
        if not reference:
            raise RegisterError(f"{source}: line {number}: reference is empty")
        register.setdefault(key, []).append(
            LocationOfConcern(postcode_key=key, category=category, reference=reference)
        )
    return register
