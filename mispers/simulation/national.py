"""Guard rails: which figures of the shipped policy are national rules, read from the `[N]` tags
in its comments, and where a candidate policy is weaker than them.

A tag comment belongs to the table header or the key on its line, or to the key on the line
after a comment-only line. A figure is national when its own tag or an enclosing table's tag
says `[N]` and nothing else (`duty [N], hours [D]` makes the duty national and the hours the
force's, so the hours are not guarded). Weaker means: a later deadline, a lower floor or age,
a higher repeat count or a shorter window before a floor applies, a flag or a required step
dropped, a phrase of the history guard removed."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mispers.domain.types import RiskLevel
from mispers.policy.loader import default_policy_path
from mispers.policy.model import Policy

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(?:#(.*))?$")
_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=[^#]*(?:#(.*))?$")
_COMMENT = re.compile(r"^\s*#(.*)$")
# integers where a larger figure demands more (else a smaller one does)
_LOWER_IS_WEAKER = {"age_of_consent", "under_13_age", "days"}
_HIGHER_IS_WEAKER = {"episodes", "same_location_episodes"}


def _national_only(comment: str | None) -> bool:
    if not comment:
        return False
    return "[N" in comment and "[D" not in comment and "[L" not in comment


def national_paths(text: str) -> dict[str, str]:
    """Dotted paths of the national figures in a policy file's text, each with its tag comment."""
    out: dict[str, str] = {}
    table = ""
    pending: str | None = None
    for line in text.splitlines():
        if not line.strip():
            pending = None
            continue
        if (m := _COMMENT.match(line)) is not None:
            pending = m.group(1).strip()
            continue
        if (m := _HEADER.match(line)) is not None:
            table = m.group(1)
            if _national_only(m.group(2)):
                out.setdefault(table, m.group(2).strip())
            pending = None
            continue
        if (m := _KEY.match(line)) is not None:
            comment = m.group(2) or pending
            if _national_only(comment):
                assert comment is not None
                out.setdefault(f"{table}.{m.group(1)}".strip("."), comment.strip())
            pending = None
    return out


@dataclass(frozen=True)
class Weaker:
    field: str
    shipped: str
    candidate: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "shipped": self.shipped,
            "candidate": self.candidate,
            "rule": self.rule,
        }

    def sentence(self) -> str:
        return (
            f"{self.field}: {self.candidate} where the national rule is {self.shipped} "
            f"({self.rule})"
        )


def _show(value: Any) -> str:
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    return str(value)


def _risk(value: Any) -> RiskLevel | None:
    try:
        return RiskLevel(value)
    except ValueError:
        return None


def _threshold_covered(shipped: dict[str, Any], candidate: list[dict[str, Any]]) -> bool:
    """Some candidate threshold raises the floor at least as soon, as high, with as much."""
    for c in candidate:
        if (
            c["episodes"] <= shipped["episodes"]
            and c["days"] >= shipped["days"]
            and RiskLevel(c["floor"]) >= RiskLevel(shipped["floor"])
            and (c.get("flag_repeat") or not shipped.get("flag_repeat"))
            and set(shipped.get("requires", [])) <= set(c.get("requires", []))
        ):
            return True
    return False


def _compare(path: str, shipped: Any, candidate: Any, rule: str, out: list[Weaker]) -> None:
    leaf = path.rsplit(".", 1)[-1]
    if isinstance(shipped, dict) and isinstance(candidate, dict):
        for key in shipped:
            if key in candidate:
                _compare(f"{path}.{key}", shipped[key], candidate[key], rule, out)
        return
    if leaf == "thresholds" and isinstance(shipped, list):
        for i, s in enumerate(shipped):
            if not _threshold_covered(s, candidate or []):
                out.append(Weaker(f"{path}[{i}]", _show(s), _show(candidate), rule))
        return
    if shipped is None or candidate is None:
        return
    weaker = False
    if isinstance(shipped, dt.timedelta):
        weaker = candidate > shipped
    elif isinstance(shipped, bool):
        weaker = shipped and not candidate
    elif isinstance(shipped, int):
        if leaf in _LOWER_IS_WEAKER:
            weaker = candidate < shipped
        elif leaf in _HIGHER_IS_WEAKER:
            weaker = candidate > shipped
    elif isinstance(shipped, str) and (level := _risk(shipped)) is not None:
        other = _risk(candidate)
        weaker = other is not None and other < level
    elif isinstance(shipped, list) and all(isinstance(v, str) for v in shipped):
        missing = [v for v in shipped if v not in candidate]
        if missing:
            out.append(Weaker(path, _show(shipped), f"without {_show(missing)}", rule))
        return
    if weaker:
        out.append(Weaker(path, _show(shipped), _show(candidate), rule))


def _at(tree: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def weaker_than_national(candidate: Policy, shipped_path: Path | None = None) -> list[Weaker]:
    """Every national figure of the shipped policy the candidate weakens."""
    from mispers.policy import load_policy

    source = shipped_path or default_policy_path()
    shipped = load_policy(source).model_dump()
    theirs = candidate.model_dump()
    out: list[Weaker] = []
    for path, rule in national_paths(source.read_text(encoding="utf-8")).items():
        _compare(path, _at(shipped, path), _at(theirs, path), rule, out)
    return out
