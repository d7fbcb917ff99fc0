"""The inspection figures, computed from the analytics store for a period.

Each figure is defined in `DEFINITIONS` (printed beside it in the HTML and PDF). Counts here are
exact; the documents that leave the force suppress small numbers (`suppress`). The JSON shape is
part of the contract: `period`, `episodes`, and `obligations` keyed by kind with `due`,
`met_on_time`, `met_late`, `waived`, `overdue` (adding up to `due`) and
`median_minutes_to_meet`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from mispers.domain.types import ObligationKind, RiskLevel

SUPPRESS_BELOW = 5
SUPPRESSED = "<5"
OUTCOMES = ("met_on_time", "met_late", "waived", "overdue")
RISKS = [r.value for r in RiskLevel]
NATIONAL_TIME_MISSING = {  # NCA missing persons data reports (children)
    "within_24h": 0.75,
    "over_7d": 0.02,
}
DEFINITIONS: dict[str, str] = {
    "episodes": "Episodes reported in the period (by the time of the report to police).",
    "due": "Obligations whose deadline fell in the period (and had passed when the record was "
    "taken, unless already met or waived). An obligation that lost its purpose before its "
    "deadline (a review while missing, once the child is found) is not counted.",
    "met_on_time": "Met at or before the deadline.",
    "met_late": "Met after the deadline.",
    "waived": "Closed by a supervisor's reasoned waiver at closure.",
    "overdue": "Deadline passed and neither met nor waived: still open, or lapsed after the "
    "deadline had already been missed.",
    "minutes_to_meet": "From the obligation's start (report, found time, disclosure...) to the "
    "event that met it; median and 90th percentile over obligations met.",
    "social_services": "Children's social care told of the missing episode (responsible and, "
    "placed out of area, host authority) and of the return, within the force's deadlines.",
    "return_interviews": "Return home interview outcome (held, declined, or a recorded decision "
    "not to hold) within 72 hours of the return (DfE statutory guidance, 2014).",
    "risk": "Grade at report (the initial grading) and at close (the last); graded up or down "
    "between them; floors applied = episodes where the rules raised the grade to a floor "
    "(child minimum, repeats, exploitation); downgrades refused by the rules never reach an "
    "episode's record (the audit log holds them): downgrades flagged are those accepted on "
    "a history-based rationale by a supervisor.",
    "repeats": "Repeat episode: the child's record held another episode in the 365 days before; "
    "children with 3+ episodes in 90 days; same place: found at a place the child was found "
    "at before.",
    "time_missing": "From the report to the child being found and seen in person, for episodes "
    "found in the period; compared with the national shares (NCA missing persons data "
    "reports: over 75% within 24 hours, about 2% over a week).",
    "closures": "Episodes closed in the period; with waivers = at least one obligation waived.",
    "alerts": "Alerts raised in the period by the rank alerted; time to acknowledge from raised "
    "to acknowledged; re-escalations = alerts above the first level (the obligation still "
    "open after its first alert).",
    "locations_of_concern": "Episodes with a sighting or found location on the register of "
    "locations of concern.",
}


EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(2999, 12, 31)


def period_problem(start: dt.date, end: dt.date) -> tuple[str, str] | None:
    """(field, reason) when a report period cannot be right, else None."""
    for field, day in (("from", start), ("to", end)):
        if not EARLIEST <= day <= LATEST:
            return field, f"must be between {EARLIEST} and {LATEST}"
    if end < start:
        return "to", "must not be before `from`"
    return None


def _period(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime.combine(start, dt.time()),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
    )


_OUTCOME_SQL = """
CASE
  WHEN o.status = 'met' AND o.met_at <= o.due_at THEN 'met_on_time'
  WHEN o.status = 'met' THEN 'met_late'
  WHEN o.status = 'waived' THEN 'waived'
  WHEN o.status IN ('open', 'overdue') AND o.due_at <= e.written_at THEN 'overdue'
  WHEN o.status = 'lapsed' AND o.met_at > o.due_at THEN 'overdue'
  ELSE NULL
END
"""


def _obligations(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime, cut: str | None
) -> dict[str, dict[str, dict[str, Any]]]:
    """{cut value: {kind: figures}}; a single '' cut when `cut` is None."""
    group = f"o.{cut}" if cut else "''"
    rows = con.execute(
        f"""
        WITH x AS (
          SELECT {group} AS cut, o.kind, {_OUTCOME_SQL} AS outcome,
                 date_diff('second', o.anchor_at, o.met_at) / 60.0 AS minutes
          FROM obligations o JOIN episodes e ON o.record_key = e.record_key AND o.batch = e.batch
          WHERE o.due_at >= ? AND o.due_at < ?
        )
        SELECT cut, kind, count(outcome),
               count(*) FILTER (WHERE outcome = 'met_on_time'),
               count(*) FILTER (WHERE outcome = 'met_late'),
               count(*) FILTER (WHERE outcome = 'waived'),
               count(*) FILTER (WHERE outcome = 'overdue'),
               quantile_cont(minutes, 0.5) FILTER (WHERE outcome LIKE 'met%'),
               quantile_cont(minutes, 0.9) FILTER (WHERE outcome LIKE 'met%')
        FROM x WHERE outcome IS NOT NULL GROUP BY ALL
        """,
        [lo, hi],
    ).fetchall()
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cut_value, kind, due, on_time, late, waived, overdue, median, p90 in rows:
        out.setdefault(str(cut_value), {})[kind] = {
            "due": due,
            "met_on_time": on_time,
            "met_late": late,
            "waived": waived,
            "overdue": overdue,
            "median_minutes_to_meet": None if median is None else round(median, 1),
            "p90_minutes_to_meet": None if p90 is None else round(p90, 1),
        }
    order = [k.value for k in ObligationKind]
    return {
        c: dict(sorted(kinds.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
        for c, kinds in out.items()
    }


def _waiver_reasons(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime
) -> dict[str, dict[str, int]]:
    rows = con.execute(
        """
        SELECT kind, coalesce(waived_reason, '(no reason)'), count(*) FROM obligations
        WHERE status = 'waived' AND due_at >= ? AND due_at < ? GROUP BY ALL ORDER BY 1, 3 DESC
        """,
        [lo, hi],
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for kind, reason, n in rows:
        out.setdefault(kind, {})[reason] = n
    return out


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> tuple[Any, ...]:
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def compute(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> dict[str, Any]:
    """Every figure of the report for episodes, obligations and alerts of [start, end]."""
    lo, hi = _period(start, end)
    (episodes,) = _one(
        con, "SELECT count(*) FROM episodes WHERE reported_at >= ? AND reported_at < ?", [lo, hi]
    )
    obligations = _obligations(con, lo, hi, None).get("", {})
    by_risk = _obligations(con, lo, hi, "risk_at_close")
    by_lac = _obligations(con, lo, hi, "looked_after")
    report: dict[str, Any] = {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "episodes": episodes,
        "obligations": obligations,
        "waiver_reasons": _waiver_reasons(con, lo, hi),
        "social_services": {
            k: obligations.get(k)
            for k in ("social_services_notified_missing", "social_services_notified_return")
        },
        "return_interviews": obligations.get("return_interview"),
        "risk": _risk(con, lo, hi),
        "repeats": _repeats(con, lo, hi, episodes),
        "time_missing": _time_missing(con, lo, hi),
        "closures": _closures(con, lo, hi),
        "alerts": _alerts(con, lo, hi),
        "locations_of_concern": _locations(con, lo, hi),
        "cuts": {
            "risk_at_close": {r: by_risk.get(r, {}) for r in RISKS if r in by_risk},
            "looked_after": {
                "looked_after": by_lac.get("True", {}),
                "not_looked_after": by_lac.get("False", {}),
            },
        },
        "episodes_by_cut": _episodes_by_cut(con, lo, hi),
        "definitions": DEFINITIONS,
        "suppression": {
            "threshold": SUPPRESS_BELOW,
            "note": "counts here are exact; the HTML and PDF show counts of 1 to 4 as '<5'",
        },
    }
    return report


def _episodes_by_cut(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime
) -> dict[str, dict[str, int]]:
    rows = con.execute(
        """SELECT risk_at_close, looked_after, count(*) FROM episodes
        WHERE reported_at >= ? AND reported_at < ? GROUP BY ALL""",
        [lo, hi],
    ).fetchall()
    risk: dict[str, int] = {}
    lac = {"looked_after": 0, "not_looked_after": 0}
    for level, looked_after, n in rows:
        risk[str(level)] = risk.get(str(level), 0) + n
        lac["looked_after" if looked_after else "not_looked_after"] += n
    return {"risk_at_close": {r: risk.get(r, 0) for r in RISKS}, "looked_after": lac}


_SEVERITY = "CASE {c} WHEN 'very_low' THEN 0 WHEN 'low' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"


def _risk(con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    at_report = dict(
        con.execute(
            """SELECT risk_at_report, count(*) FROM episodes
            WHERE reported_at >= ? AND reported_at < ? GROUP BY 1""",
            [lo, hi],
        ).fetchall()
    )
    at_close = dict(
        con.execute(
            """SELECT risk_at_close, count(*) FROM episodes
            WHERE reported_at >= ? AND reported_at < ? GROUP BY 1""",
            [lo, hi],
        ).fetchall()
    )
    up, down = _one(
        con,
        f"""SELECT count(*) FILTER (WHERE {_SEVERITY.format(c="risk_at_close")}
                                      > {_SEVERITY.format(c="risk_at_report")}),
                   count(*) FILTER (WHERE {_SEVERITY.format(c="risk_at_close")}
                                      < {_SEVERITY.format(c="risk_at_report")})
            FROM episodes WHERE reported_at >= ? AND reported_at < ?""",
        [lo, hi],
    )
    floors, flagged, downgrades = _one(
        con,
        f"""
        WITH g AS (
          SELECT g.*, lag(level) OVER (PARTITION BY g.record_key ORDER BY seq) AS prev
          FROM grades g JOIN episodes e ON g.record_key = e.record_key AND g.batch = e.batch
          WHERE e.reported_at >= ? AND e.reported_at < ?
        )
        SELECT count(DISTINCT record_key) FILTER (WHERE automatic),
               count(*) FILTER (WHERE flagged),
               count(*) FILTER (WHERE prev IS NOT NULL
                 AND {_SEVERITY.format(c="level")} < {_SEVERITY.format(c="prev")})
        FROM g
        """,
        [lo, hi],
    )
    return {
        "at_report": {r: at_report.get(r, 0) for r in RISKS},
        "at_close": {r: at_close.get(r, 0) for r in RISKS},
        "graded_up": up,
        "graded_down": down,
        "floors_applied": floors,
        "downgrades_accepted": downgrades,
        "downgrades_flagged": flagged,
    }


def _repeats(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime, episodes: int
) -> dict[str, Any]:
    repeat, children, same_place, distinct = _one(
        con,
        """SELECT count(*) FILTER (WHERE repeat_365d >= 2),
                  count(DISTINCT child_ref) FILTER (WHERE repeat_90d >= 3),
                  count(*) FILTER (WHERE list_contains(flags, 'repeat_location')),
                  count(DISTINCT child_ref)
           FROM episodes WHERE reported_at >= ? AND reported_at < ?""",
        [lo, hi],
    )
    return {
        "repeat_episodes": repeat,
        "repeat_share": round(repeat / episodes, 3) if episodes else None,
        "children": distinct,
        "children_3_in_90_days": children,
        "same_place_episodes": same_place,
    }


TIME_BUCKETS = (("up_to_24h", 0, 24), ("24h_to_72h", 24, 72), ("72h_to_7d", 72, 168))


def _time_missing(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime
) -> dict[str, Any]:
    hours = [
        r[0]
        for r in con.execute(
            """SELECT date_diff('second', reported_at, found_at) / 3600.0 FROM episodes
            WHERE found_at >= ? AND found_at < ? AND found_at >= reported_at""",
            [lo, hi],
        ).fetchall()
    ]
    (still,) = _one(
        con,
        """SELECT count(*) FROM episodes
        WHERE reported_at >= ? AND reported_at < ? AND found_at IS NULL""",
        [lo, hi],
    )
    buckets = {
        name: sum(1 for h in hours if (a < h or a == 0) and h <= b) for name, a, b in TIME_BUCKETS
    }
    buckets["over_7d"] = sum(1 for h in hours if h > 168)
    found = len(hours)
    ordered = sorted(hours)
    return {
        "found": found,
        "still_missing": still,
        "buckets": buckets,
        "median_hours": round(ordered[found // 2], 2) if found else None,
        "share_within_24h": round(buckets["up_to_24h"] / found, 3) if found else None,
        "share_over_7d": round(buckets["over_7d"] / found, 3) if found else None,
        "national": NATIONAL_TIME_MISSING,
        "hours": ordered,
    }


def _closures(con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    closed, waived = _one(
        con,
        """SELECT count(*), count(*) FILTER (WHERE e.record_key IN (
              SELECT record_key FROM obligations WHERE status = 'waived'))
        FROM episodes e WHERE closed_at >= ? AND closed_at < ?""",
        [lo, hi],
    )
    return {"closed": closed, "with_waivers": waived}


ACK_BANDS = (
    ("under_5m", 5),
    ("5m_to_15m", 15),
    ("15m_to_30m", 30),
    ("30m_to_1h", 60),
    ("1h_to_2h", 120),
    ("over_2h", None),
)
_ACK_BAND = (
    "CASE "
    + " ".join(
        f"WHEN date_diff('second', raised_at, acknowledged_at) < {limit * 60} THEN '{band}'"
        for band, limit in ACK_BANDS
        if limit is not None
    )
    + " ELSE 'over_2h' END"
)


def _alerts(con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    by_rank = dict(
        con.execute(
            "SELECT rank, count(*) FROM alerts WHERE raised_at >= ? AND raised_at < ? GROUP BY 1",
            [lo, hi],
        ).fetchall()
    )
    raised, acked, median, p90, again = _one(
        con,
        """SELECT count(*), count(acknowledged_at),
             quantile_cont(date_diff('second', raised_at, acknowledged_at) / 60.0, 0.5),
             quantile_cont(date_diff('second', raised_at, acknowledged_at) / 60.0, 0.9),
             count(*) FILTER (WHERE escalation_level >= 2)
           FROM alerts WHERE raised_at >= ? AND raised_at < ?""",
        [lo, hi],
    )
    weekly = con.execute(
        """SELECT strftime(date_trunc('week', raised_at), '%Y-%m-%d') AS week, rank, count(*)
        FROM alerts WHERE raised_at >= ? AND raised_at < ? GROUP BY ALL ORDER BY 1""",
        [lo, hi],
    ).fetchall()
    bands = dict(
        con.execute(
            f"""SELECT {_ACK_BAND}, count(*) FROM alerts
            WHERE raised_at >= ? AND raised_at < ? AND acknowledged_at IS NOT NULL GROUP BY 1""",
            [lo, hi],
        ).fetchall()
    )
    per_week: dict[str, dict[str, int]] = {}
    for week, rank, n in weekly:
        per_week.setdefault(week, {})[rank] = n
    ranks = ("sergeant", "inspector", "superintendent")
    return {
        "raised": raised,
        "by_rank": {r: by_rank.get(r, 0) for r in ranks}
        | {r: n for r, n in by_rank.items() if r not in ranks},
        "acknowledged": acked,
        "median_minutes_to_acknowledge": None if median is None else round(median, 1),
        "p90_minutes_to_acknowledge": None if p90 is None else round(p90, 1),
        "re_escalations": again,
        "per_week": per_week,
        "time_to_acknowledge": {band: bands.get(band, 0) for band, _ in ACK_BANDS},
    }


def _locations(con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    (hits,) = _one(
        con,
        """SELECT count(*) FROM episodes
        WHERE reported_at >= ? AND reported_at < ? AND location_hits > 0""",
        [lo, hi],
    )
    categories = dict(
        con.execute(
            """SELECT c, count(*) FROM (SELECT unnest(location_categories) AS c FROM episodes
            WHERE reported_at >= ? AND reported_at < ?) GROUP BY 1""",
            [lo, hi],
        ).fetchall()
    )
    return {"episodes_with_hits": hits, "by_category": categories}


def public_json(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: without the raw distributions the plots are drawn from."""
    out = dict(report)
    out["time_missing"] = {k: v for k, v in report["time_missing"].items() if k != "hours"}
    return out


def suppress(value: Any) -> Any:
    """A count of 1 to 4 shown as '<5' (as published statistics do); zero and others as is."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < SUPPRESS_BELOW:
        return SUPPRESSED
    return value
