"""The comparison as a document: self-contained HTML (inline CSS and SVG plots drawn as the
inspection report draws them, nothing fetched when opened) or the JSON figures."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mispers.analytics.document import CSS
from mispers.analytics.plots import RANK_COLOURS, _svg
from mispers.simulation.compare import DAYS

EXTRA_CSS = """
.warning { border-left: 6px solid #d4351c; background: #fbe9e7; padding: 0.5em 0.8em; }
.caveat { border-left: 6px solid #1d70b8; background: #f3f2f1; padding: 0.5em 0.8em; }
td.up { color: #d4351c; } td.down { color: #00703c; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _label(name: str) -> str:
    return html.escape(name.replace("_", " "))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _ids(ids: list[str]) -> str:
    return ": " + _e(", ".join(ids)) if ids else ""


def _delta(b: float, c: float, share: bool = False) -> str:
    cls = "up" if c > b else "down" if c < b else ""
    if share:
        change = f"{(c - b) * 100:+.1f} pts" if c != b else "0"
    elif isinstance(b, int) and isinstance(c, int):
        change = f"{c - b:+,}" if c != b else "0"
    else:
        change = f"{c - b:+,.2f}" if c != b else "0"
    return f'<td class="{cls}">{change}</td>'


def _rows(base: dict[str, Any], cand: dict[str, Any], share: bool = False) -> str:
    out = []
    for key in list(dict.fromkeys([*base, *cand])):
        b, c = base.get(key, 0), cand.get(key, 0)
        shown_b = f"{b:.0%}" if share else _num(b)
        shown_c = f"{c:.0%}" if share else _num(c)
        out.append(
            f"<tr><td>{_label(key)}</td><td>{shown_b}</td><td>{shown_c}</td>"
            f"{_delta(b, c, share)}</tr>"
        )
    return "".join(out)


def _table(title: str, base: dict[str, Any], cand: dict[str, Any], share: bool = False) -> str:
    return (
        f"<h3>{_e(title)}</h3><table><thead><tr><th></th><th>baseline</th><th>candidate</th>"
        f"<th>change</th></tr></thead><tbody>{_rows(base, cand, share)}</tbody></table>"
    )


def alerts_by_hour_of_week(base: dict[str, list[int]], cand: dict[str, list[int]]) -> str:
    """One panel per rank: alerts raised in each hour of the week (London time), summed over
    the period, baseline dashed, candidate solid."""
    ranks = [r for r in RANK_COLOURS if r in base or r in cand] or list(RANK_COLOURS)
    fig, axes = plt.subplots(len(ranks), 1, figsize=(7.5, 1.9 * len(ranks)), sharex=True)
    axes = axes if len(ranks) > 1 else [axes]
    for ax, rank in zip(axes, ranks, strict=True):
        colour = RANK_COLOURS[rank]
        ax.plot(base.get(rank, [0] * 168), color="#505a5f", ls="--", lw=1, label="baseline")
        ax.plot(cand.get(rank, [0] * 168), color=colour, lw=1.2, label="candidate")
        ax.set_ylabel(rank, fontsize=8)
        for day in range(1, 7):
            ax.axvline(day * 24, color="#b1b4b6", lw=0.5)
        ax.legend(frameon=False, ncol=2, loc="upper right", fontsize=7)
    axes[-1].set_xticks([d * 24 + 12 for d in range(7)], list(DAYS))
    axes[-1].set_xlabel("hour of the week (Europe/London)")
    return _svg(fig)


def overdue_by_kind(base: dict[str, int], cand: dict[str, int]) -> str:
    kinds = sorted(set(base) | set(cand))
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * max(len(kinds), 3) + 1))
    ys = range(len(kinds))
    ax.barh(
        [y - 0.2 for y in ys],
        [base.get(k, 0) for k in kinds],
        0.4,
        color="#b1b4b6",
        label="baseline",
    )
    ax.barh(
        [y + 0.2 for y in ys],
        [cand.get(k, 0) for k in kinds],
        0.4,
        color="#d4351c",
        label="candidate",
    )
    ax.set_yticks(list(ys), [k.replace("_", " ") for k in kinds])
    ax.invert_yaxis()
    ax.set_xlabel("obligations overdue")
    ax.legend(frameon=False, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return _svg(fig)


def render_html(result: dict[str, Any]) -> str:
    b, c = result["baseline"], result["candidate"]
    weaker = result["weaker_than_national"]
    parts = [
        f"<h1>Policy simulation</h1><p>{_e(result['policies']['candidate'])} against "
        f"{_e(result['policies']['baseline'])}; {result['episodes']:,} episodes "
        f"({result['events']:,} events) reported {result['period']['from']} to "
        f"{result['period']['to']}, from {_e(result['source'])}.</p>"
    ]
    if weaker:
        items = "".join(
            f"<li><b>{_e(w['field'])}</b>: {_e(w['candidate'])} where the national rule is "
            f"{_e(w['shipped'])} ({_e(w['rule'])})</li>"
            for w in weaker
        )
        parts.append(
            '<div class="warning"><h2>Weaker than a national rule</h2>'
            f"<ul>{items}</ul><p>Simulated only because --allow-weaker-than-national was "
            "given.</p></div>"
        )
    parts.append(f'<p class="caveat">{_e(result["caveat"])}</p>')
    parts.append("<h2>Alerts</h2>")
    parts.append(
        _table(
            "alerts raised, by rank",
            {**b["alerts_by_rank"], "total": b["alerts_total"]},
            {**c["alerts_by_rank"], "total": c["alerts_total"]},
        )
    )
    parts.append(
        _table("alerts per day, by rank", b["alerts_per_day_by_rank"], c["alerts_per_day_by_rank"])
    )
    parts.append(
        _table(
            "share raised at night (22:00 to 07:00 London time)",
            {**b["night_share_by_rank"], "all ranks": b["night_share"]},
            {**c["night_share_by_rank"], "all ranks": c["night_share"]},
            share=True,
        )
    )
    busy_b, busy_c = b["busiest_hour_of_week_by_rank"], c["busiest_hour_of_week_by_rank"]

    def _busy(side: dict[str, Any], rank: str) -> str:
        top = side.get(rank, {})
        return f"<td>{_e(top.get('hour', '-'))} ({top.get('alerts', 0):,})</td>"

    busiest = "".join(
        f"<tr><td>{_label(r)}</td>{_busy(busy_b, r)}{_busy(busy_c, r)}</tr>"
        for r in dict.fromkeys([*busy_b, *busy_c])
    )
    parts.append(
        "<h3>busiest hour of the week (alerts in that hour over the period)</h3><table><thead>"
        f"<tr><th></th><th>baseline</th><th>candidate</th></tr></thead><tbody>{busiest}</tbody></table>"
    )
    parts.append(
        "<figure>"
        + alerts_by_hour_of_week(
            b["alerts_by_hour_of_week_by_rank"], c["alerts_by_hour_of_week_by_rank"]
        )
        + "<figcaption>Alerts per rank per hour of the week, baseline against candidate."
        "</figcaption></figure>"
    )
    parts.append("<h2>Overdue obligations</h2>")
    parts.append(
        '<p class="definition">An obligation is overdue when its deadline passed before it was '
        "met, waived or lapsed (or before the end of the period, for one still open); how long "
        "is from the deadline to then.</p>"
    )
    parts.append(
        _table(
            "by kind",
            {**b["overdue_by_kind"], "total": b["overdue_total"]},
            {**c["overdue_by_kind"], "total": c["overdue_total"]},
        )
    )
    parts.append(_table("by how long", b["overdue_by_lateness"], c["overdue_by_lateness"]))
    parts.append(
        "<figure>" + overdue_by_kind(b["overdue_by_kind"], c["overdue_by_kind"]) + "</figure>"
    )
    parts.append("<h2>Closures and risk</h2>")
    parts.append(
        _table(
            "events the rules would refuse, by reason",
            b["refused_events_by_reason"],
            c["refused_events_by_reason"],
        )
    )
    cr, rg = result["closures_refused_only_under_candidate"], result["risk_grades_differ"]
    parts.append(
        f"<p>Closures refused: {b['closures_refused']:,} under the baseline, "
        f"{c['closures_refused']:,} under the candidate; {cr['count']:,} episodes whose closure "
        f"only the candidate refuses{_ids(cr['episodes'])}."
        f"</p><p>Episodes whose risk grades or floor would differ: {rg['count']:,}"
        f"{_ids(rg['episodes'])}.</p>"
    )
    rows = "".join(
        f"<tr><td>{_e(x['episode_id'])}</td><td>{x['alerts'][0]} &rarr; {x['alerts'][1]}</td>"
        f"<td>{x['overdue'][0]} &rarr; {x['overdue'][1]}</td>"
        f"<td>{x['refused_events'][0]} &rarr; {x['refused_events'][1]}</td>"
        f"<td>{'yes' if x['grades'] else ''}</td></tr>"
        for x in result["changed_most"]
    )
    parts.append(
        f"<h2>Episodes that change most</h2><p>{result['episodes_changed']:,} episodes change; "
        "the most changed, for a reviewer to open:</p><table><thead><tr><th>episode</th>"
        "<th>alerts</th><th>overdue</th><th>refused events</th><th>grades differ</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Policy simulation</title>"
        f"<style>{CSS}{EXTRA_CSS}</style></head><body>{body}</body></html>"
    )


def write_result(result: dict[str, Any], out: Path) -> None:
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    else:
        out.write_text(render_html(result), encoding="utf-8")
