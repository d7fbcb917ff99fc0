"""The audit's hash chain: each line carries the SHA-256 of the line before it and its own.

A line is a JSON object that begins `{"prev":"<64 hex>",` and ends `,"hash":"<64 hex>"}`; `hash`
is the SHA-256 of the line with its `hash` member removed (so of `{"prev":...,<record>}`), and
`prev` is the previous line's `hash` (64 zeros on the first line). An edited line no longer
matches its own hash; a deleted, inserted or reordered line no longer matches its successor's
`prev`; either way `verify` names the first line where the chain breaks. Only the removal of
the last lines leaves no trace in the file itself: `mispers audit verify` prints the head hash,
which an operator can keep elsewhere (a ticket, a second system) to prove the tail later.

Fixed positions let verification hash and compare without parsing JSON: a million lines take a
few seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

GENESIS = "0" * 64
_PREFIX = b'{"prev":"'
_HASH_KEY = b',"hash":"'
_SUFFIX_LEN = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64>"}
_PREV_END = len(_PREFIX) + 64
_HEX = frozenset(b"0123456789abcdef")


def seal(prev: str, body: str) -> tuple[str, str]:
    """The chained line (without newline) for a record serialised as the JSON object `body`,
    following the line whose hash is `prev`; and the new line's hash."""
    if not body.startswith("{") or len(body) < 3:
        raise ValueError("an audit record must be a non-empty JSON object")
    core = f'{{"prev":"{prev}",{body[1:]}'
    digest = hashlib.sha256(core.encode()).hexdigest()
    return f'{core[:-1]},"hash":"{digest}"}}', digest


def line_hash(line: bytes) -> str | None:
    """The hash a well-formed line declares (not checked), or None."""
    line = line.rstrip(b"\n")
    if len(line) < _PREV_END + _SUFFIX_LEN or not line.startswith(_PREFIX):
        return None
    declared = line[-_SUFFIX_LEN + len(_HASH_KEY) : -2]
    if line[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_HASH_KEY)] != _HASH_KEY or not line.endswith(b'"}'):
        return None
    return declared.decode("ascii") if _is_hex(declared) else None


@dataclass(frozen=True)
class Verdict:
    """The outcome of a verification: how many lines held, the head hash, and where (1-based
    line number) and why the chain first broke, if it did."""

    lines: int
    head: str
    broken_line: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_line is None


def verify(lines: Iterable[bytes]) -> Verdict:
    """Check every line's own hash and its link to the line before; stop at the first break."""
    prev = GENESIS.encode()
    sha256 = hashlib.sha256
    count = 0
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        size = len(line)
        if (
            size < _PREV_END + _SUFFIX_LEN
            or not line.startswith(_PREFIX)
            or line[size - _SUFFIX_LEN : size - _SUFFIX_LEN + 9] != _HASH_KEY
            or not line.endswith(b'"}')
        ):
            return _broken(count, prev, number, "not a chained audit record (torn or edited)")
        declared = line[size - _SUFFIX_LEN + 9 : size - 2]
        core = line[: size - _SUFFIX_LEN] + b"}"
        if sha256(core).hexdigest().encode() != declared:
            return _broken(count, prev, number, "the record does not match its hash (edited)")
        if line[len(_PREFIX) : _PREV_END] != prev:
            return _broken(
                count,
                prev,
                number,
                "the record does not follow the one before it (a line deleted, inserted or "
                "moved before this one)",
            )
        prev = declared
        count = number
    return Verdict(lines=count, head=prev.decode("ascii"))


def _broken(count: int, prev: bytes, number: int, reason: str) -> Verdict:
    return Verdict(lines=count, head=prev.decode("ascii"), broken_line=number, reason=reason)


def _is_hex(value: bytes) -> bool:
    return len(value) == 64 and all(c in _HEX for c in value)
