"""Keep personal data out of logs and error answers.

Redaction works by field name, because that is what survives every hop: a pydantic model, the
dict it was dumped to, the JSON an API received, a repr in an exception message all keep the
field names. The names come from the contract itself (`personal_field_names()`, the fields
marked with `personal()`), plus a short list of names that mean personal data wherever they
appear. A pydantic model passed to a logger is also redacted by its own marking, so a field
newly marked `personal()` is hidden with no change here.

Free text gets two more nets: `key=value` / `"key": value` spans naming a personal field (how
reprs and exception messages quote input) and anything shaped like a UK postcode. Log messages
themselves should be constant strings with data passed as key-values; these nets are for the
messages of code we do not own, and for exception text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import re
import sys
import traceback
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ValidationError

from mispers.domain.events import PERSONAL_MARK, personal_field_names

REDACTED = "[redacted]"
_MAX_DEPTH = 12

# Names that mean personal data wherever they appear, beyond the contract's own markings: the
# state's copies of event fields, the free-text fields of any future source, and the usual
# spellings of identity and address fields.
EXTRA_PERSONAL_NAMES: frozenset[str] = frozenset(
    {
        "name",
        "names",
        "first_name",
        "given_name",
        "forename",
        "forenames",
        "last_name",
        "family_name",
        "surname",
        "full_name",
        "child_name",
        "date_of_birth",
        "dob",
        "birth_date",
        "birthdate",
        "address",
        "addresses",
        "home_address",
        "street",
        "postcode",
        "postcodes",
        "post_code",
        "location",
        "last_seen_location",
        "description",
        "location_description",
        "summary",
        "rationale",
        "outcome",
        "circumstances",
        "contact_name",
        "disclosures",
        "notes",
        "free_text",
    }
)

# A key containing one of these is personal whatever surrounds it (`found_postcode_key`).
_PERSONAL_FRAGMENTS = ("postcode", "dateofbirth")

# Keys structlog uses for its own bookkeeping: never rewritten.
_PASSTHROUGH_KEYS = frozenset({"_record", "_from_structlog", "level", "logger", "timestamp"})

_POSTCODE = re.compile(r"\b(?:GIR ?0AA|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})\b", re.IGNORECASE)


def _norm(key: str) -> str:
    return re.sub(r"[\s_\-]", "", key).lower()


class Redactor:
    """Redacts values under personal names, recursively; builds new containers and never
    mutates what it is given (loggers share dicts with their callers)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self._normalised = frozenset(_norm(n) for n in self.names)
        alternatives = "|".join(
            re.escape(n) for n in sorted(self.names, key=len, reverse=True) if n
        )
        # `name='Jane'`, `"name": "Jane"`, `date_of_birth=datetime.date(2012, 1, 2)`, `name=Jane`
        self._kv = re.compile(
            rf"""(?P<key>['"]?\b(?:{alternatives})\b['"]?\s*[:=]\s*)"""
            r"""(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[A-Za-z_.]+\([^)]*\)|[^,;\s)}\]]+)""",
            re.IGNORECASE,
        )

    def is_personal(self, key: str) -> bool:
        normalised = _norm(key)
        return normalised in self._normalised or any(f in normalised for f in _PERSONAL_FRAGMENTS)

    def redact_text(self, text: str) -> str:
        if len(text) < 5:
            return text
        text = self._kv.sub(lambda m: m.group("key") + REDACTED, text)
        return _POSTCODE.sub(REDACTED, text)

    def redact(self, value: Any, depth: int = 0) -> Any:
        """A copy of `value` with every personal field replaced by REDACTED."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()  # what the JSON renderer would otherwise repr()
        if depth >= _MAX_DEPTH:
            return "[truncated]"
        if isinstance(value, BaseModel):
            marked = _marked_personal(type(value))
            return {
                name: REDACTED
                if (name in marked or self.is_personal(name))
                and getattr(value, name, None) is not None
                else self.redact(getattr(value, name, None), depth + 1)
                for name in type(value).model_fields
            }
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: self._field(f.name, getattr(value, f.name, None), depth)
                for f in dataclasses.fields(value)
            }
        if isinstance(value, Mapping):
            return {k: self._field(k, v, depth) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v, depth + 1) for v in value]
        if isinstance(value, BaseException):
            return safe_exception_message(value, self)
        if isinstance(value, bytes | bytearray):
            return f"[{len(value)} bytes]"
        return value

    def _field(self, key: Any, value: Any, depth: int) -> Any:
        if isinstance(key, str) and self.is_personal(key) and value is not None:
            return REDACTED
        return self.redact(value, depth + 1)

    def process(self, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """The structlog processor's body (see `redact_processor`)."""
        out: dict[str, Any] = {}
        for key, value in event_dict.items():
            if key in _PASSTHROUGH_KEYS:
                out[key] = value
            elif key == "exc_info":
                info = _exc_info(value)
                if info is not None:
                    out["exception"] = safe_exception_text(info[1], self)
            elif key in ("event", "exception", "stack_info") and isinstance(value, str):
                out[key] = self.redact_text(value) if key != "stack_info" else value
            else:
                out[key] = self._field(key, value, -1)
        return out


@functools.cache
def _marked_personal(model: type[BaseModel]) -> frozenset[str]:
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(PERSONAL_MARK):
            names.add(name)
    return frozenset(names)


def personal_names() -> frozenset[str]:
    """The contract's personal fields plus the always-personal names."""
    return personal_field_names() | EXTRA_PERSONAL_NAMES


@functools.cache
def default_redactor() -> Redactor:
    return Redactor(personal_names())


def redact(value: Any) -> Any:
    """A copy of any log value, model, dict or list with personal fields replaced."""
    return default_redactor().redact(value)


def redact_text(text: str) -> str:
    return default_redactor().redact_text(text)


def redact_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last of `mispers.logs.shared_processors()`, so it sees every
    key the others added, for structlog and stdlib (temporalio, uvicorn) records alike.
    Exceptions are rendered here, with their messages redacted, instead of by
    `format_exc_info`, because exception text quotes input."""
    return default_redactor().process(event_dict)


# Exceptions ---------------------------------------------------------------------------------


def _exc_info(
    value: Any,
) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    if value is True:
        info = sys.exc_info()
        return None if info[0] is None or info[1] is None else (info[0], info[1], info[2])
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[0], value[1], value[2]
    return None


def safe_exception_message(exc: BaseException, redactor: Redactor | None = None) -> str:
    """An exception's message fit for a log line or an error answer."""
    redactor = redactor or default_redactor()
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        parts = [f"{_loc(e['loc'])}: {redactor.redact_text(e['msg'])}" for e in errors]
        return f"{exc.error_count()} validation error(s) for {exc.title}: " + "; ".join(parts)
    return redactor.redact_text(str(exc))


def safe_exception_text(exc: BaseException, redactor: Redactor | None = None) -> str:
    """A traceback (frames as usual: code, not data) with every message in the chain
    passed through `safe_exception_message`."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    lines: list[str] = []
    for index, item in enumerate(reversed(chain)):
        if index:
            lines.append("\nwhich led to:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(item.__traceback__))
        kind = type(item)
        message = safe_exception_message(item, redactor)
        lines.append(f"{kind.__module__}.{kind.__qualname__}: {message}\n")
    return "".join(lines).rstrip("\n")


# Error answers ------------------------------------------------------------------------------


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def safe_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic / FastAPI validation errors made fit to send back: the location, the rule and
    its limits, never the offending input (which pydantic includes by default and which may be
    a child's name or date of birth)."""
    redactor = default_redactor()
    out: list[dict[str, Any]] = []
    for error in errors:
        item: dict[str, Any] = {
            "loc": [p if isinstance(p, int | str) else str(p) for p in error.get("loc", ())],
            "msg": redactor.redact_text(str(error.get("msg", ""))),
            "type": str(error.get("type", "")),
        }
        ctx = error.get("ctx")
        if isinstance(ctx, Mapping):
            safe_ctx = {
                str(k): redactor.redact(v) if isinstance(v, str | int | float | bool) else REDACTED
                for k, v in ctx.items()
                if k != "error" and not redactor.is_personal(str(k))
            }
            if safe_ctx:
                item["ctx"] = safe_ctx
        out.append(item)
    return out


def safe_error_detail(exc: BaseException) -> str | list[dict[str, Any]]:
    """What an error answer may say about `exc`: validation errors without their input, any
    other message redacted."""
    if isinstance(exc, ValidationError):
        return safe_errors(exc.errors(include_input=False, include_url=False))
    errors = getattr(exc, "errors", None)
    if callable(errors):  # fastapi.exceptions.RequestValidationError and friends
        try:
            raw = errors()
        except Exception:
            raw = None
        if isinstance(raw, Sequence):
            return safe_errors(e for e in raw if isinstance(e, Mapping))
    return safe_exception_message(exc)
