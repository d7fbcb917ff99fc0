"""The report as a document: self-contained HTML (inline CSS and SVG, no request leaves the
page), the same HTML printed to PDF by WeasyPrint, or the JSON figures.

Counts of 1 to 4 are shown as "<5" in the HTML and PDF, as published statistics do, so the
document can leave the force without identifying a child; each figure's definition is printed
beside it."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from mispers.analytics import plots
from mispers.analytics.figures import DEFINITIONS, OUTCOMES, SUPPRESS_BELOW, public_json, suppress

CSS = """
@page { size: A4; margin: 16mm 14mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #0b0c0c; font-size: 10pt;
       max-width: 60em; margin: 0 auto; padding: 1em; }
h1 { font-size: 18pt; margin-bottom: 0.2em; } h2 { font-size: 13pt; margin-top: 1.6em;
  border-bottom: 2px solid #1d70b8; page-break-after: avoid; }
h3 { font-size: 11pt; page-break-after: avoid; }
table { border-collapse: collapse; margin: 0.5em 0 1em; page-break-inside: avoid; }
th, td { border-bottom: 1px solid #b1b4b6; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f2f1; }
.definition { color: #505a5f; font-size: 9pt; margin: 0.2em 0 0.6em; }
.note { background: #f3f2f1; padding: 0.5em 0.8em; }
figure { margin: 0.5em 0; page-break-inside: avoid; } figure svg { max-width: 100%; height: auto; }
"""


def _n(value: Any) -> str:
    shown = suppress(value)
    if shown is None:
        return "&ndash;"
    if isinstance(shown, float):
        return f"{shown:,.1f}"
    if isinstance(shown, int):
        return f"{shown:,}"
    return html.escape(str(shown))


def _label(name: str) -> str:
    return html.escape(name.replace("_", " "))


def _definition(key: str) -> str:
    return f'<p class="definition">{html.escape(DEFINITIONS[key])}</p>'


def _hours(minutes: float | None) -> str:
    if minutes is None:
        return "&ndash;"
    return f"{minutes / 60:,.1f} h" if minutes >= 90 else f"{minutes:,.0f} min"


def _obligation_table(obligations: dict[str, dict[str, Any]]) -> str:
    head = "".join(f"<th>{_label(c)}</th>" for c in ("due", *OUTCOMES))
    rows = []
    for kind, f in obligations.items():
        cells = "".join(f"<td>{_n(f[c])}</td>" for c in ("due", *OUTCOMES))
        on_time = f"{f['met_on_time'] / f['due']:.0%}" if f["due"] >= SUPPRESS_BELOW else "&ndash;"
        rows.append(
            f"<tr><td>{_label(kind)}</td>{cells}<td>{on_time}</td>"
            f"<td>{_hours(f['median_minutes_to_meet'])}</td>"
            f"<td>{_hours(f['p90_minutes_to_meet'])}</td></tr>"
        )
    return (
        f"<table><thead><tr><th>obligation</th>{head}<th>on time</th>"
        "<th>median to meet</th><th>90th percentile</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _pairs(title: str, items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_label(k)}</td><td>{_n(v)}</td></tr>" for k, v in items.items())
    return (
        f"<table><thead><tr><th>{html.escape(title)}</th><th>count</th></tr></thead>{rows}</table>"
    )


def _waivers(reasons: dict[str, dict[str, int]]) -> str:
    """Reasons given fewer than five times are grouped, so free text cannot single a child out."""
    rows = []
    for kind, by_reason in reasons.items():
        rare = sum(n for n in by_reason.values() if n < SUPPRESS_BELOW)
        for reason, n in by_reason.items():
            if n >= SUPPRESS_BELOW:
                rows.append(
                    f"<tr><td>{_label(kind)}</td><td>{html.escape(reason)}</td><td>{_n(n)}</td></tr>"
                )
        if rare:
            rows.append(
                f"<tr><td>{_label(kind)}</td><td>other reasons (each given fewer than "
                f"{SUPPRESS_BELOW} times)</td><td>{_n(rare)}</td></tr>"
            )
    if not rows:
        return "<p>No waivers in the period.</p>"
    return (
        "<table><thead><tr><th>obligation</th><th>reason</th><th>waived</th></tr></thead>"
        f"{''.join(rows)}</table>"
    )


def render_html(report: dict[str, Any], generated_at: dt.datetime | None = None) -> str:
    r = report
    when = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    tm, al, risk, rep = r["time_missing"], r["alerts"], r["risk"], r["repeats"]
    obligations = r["obligations"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Missing children: inspection report {r['period']['from']} to "
        f"{r['period']['to']}</title><style>{CSS}</style></head><body>",
        "<h1>Missing children: inspection report</h1>",
        f"<p>Period <strong>{r['period']['from']}</strong> to <strong>{r['period']['to']}"
        f"</strong>. Episodes reported: <strong>{_n(r['episodes'])}</strong>. "
        f"Produced {when} from the analytics store.</p>",
        _definition("episodes"),
        f"<p class='note'>Counts of 1 to 4 are shown as &lt;{SUPPRESS_BELOW}, as published "
        "statistics do. No names, dates of birth, addresses or postcodes are held in the store "
        "this report is drawn from.</p>",
        "<h2>Obligations: were the steps taken in time?</h2>",
        _definition("due"),
        "<p class='definition'>"
        + " ".join(html.escape(f"{_label(o)}: {DEFINITIONS[o]}") for o in OUTCOMES)
        + "</p>",
        _definition("minutes_to_meet"),
        _obligation_table(obligations),
        f"<figure>{plots.compliance(obligations)}<figcaption>Compliance per obligation kind"
        "</figcaption></figure>"
        if obligations
        else "",
        "<h3>Waivers, by reason</h3>",
        _waivers(r["waiver_reasons"]),
        "<h2>Social services told in time</h2>",
        _definition("social_services"),
        _obligation_table({k: v for k, v in r["social_services"].items() if v}),
        "<h2>Return home interviews within 72 hours</h2>",
        _definition("return_interviews"),
        _obligation_table({"return_interview": r["return_interviews"]})
        if r["return_interviews"]
        else "<p>None due in the period.</p>",
        "<h2>Risk grading</h2>",
        _definition("risk"),
        "<table><thead><tr><th>level</th><th>at report</th><th>at close</th></tr></thead>"
        + "".join(
            f"<tr><td>{_label(level)}</td><td>{_n(risk['at_report'][level])}</td>"
            f"<td>{_n(risk['at_close'][level])}</td></tr>"
            for level in risk["at_report"]
        )
        + "</table>",
        _pairs(
            "changes",
            {
                k: risk[k]
                for k in (
                    "graded_up",
                    "graded_down",
                    "floors_applied",
                    "downgrades_accepted",
                    "downgrades_flagged",
                )
            },
        ),
        "<h2>Repeat episodes</h2>",
        _definition("repeats"),
        _pairs("repeats", {k: v for k, v in rep.items() if k != "repeat_share"}),
        f"<p>Repeat share of episodes: {rep['repeat_share']:.0%}</p>"
        if rep["repeat_share"] is not None and rep["repeat_episodes"] >= SUPPRESS_BELOW
        else "",
        "<h2>Time missing</h2>",
        _definition("time_missing"),
        _pairs("time to found", {**tm["buckets"], "still_missing": tm["still_missing"]}),
        f"<figure>{plots.time_to_found(tm)}<figcaption>Time to found, with the national "
        "shares</figcaption></figure>"
        if tm["found"]
        else "",
        "<h2>Closures</h2>",
        _definition("closures"),
        _pairs("closures", r["closures"]),
        "<h2>Alerts</h2>",
        _definition("alerts"),
        _pairs("alerts raised, by rank", al["by_rank"]),
        _pairs(
            "acknowledgement",
            {
                "raised": al["raised"],
                "acknowledged": al["acknowledged"],
                "re_escalations": al["re_escalations"],
            },
        ),
        f"<p>Time to acknowledge: median {_hours(al['median_minutes_to_acknowledge'])}, "
        f"90th percentile {_hours(al['p90_minutes_to_acknowledge'])}.</p>",
        f"<figure>{plots.alerts_per_week(al['per_week'])}<figcaption>Alerts per rank per week"
        "</figcaption></figure>"
        if al["per_week"]
        else "",
        f"<figure>{plots.time_to_acknowledge(al['time_to_acknowledge'])}<figcaption>Time to "
        "acknowledge</figcaption></figure>"
        if al["acknowledged"]
        else "",
        "<h2>Locations of concern</h2>",
        _definition("locations_of_concern"),
        _pairs(
            "episodes with a hit",
            {
                "episodes": r["locations_of_concern"]["episodes_with_hits"],
                **r["locations_of_concern"]["by_category"],
            },
        ),
        "<h2>Obligations by risk level at close</h2>",
    ]
    for level, table in r["cuts"]["risk_at_close"].items():
        episodes = r["episodes_by_cut"]["risk_at_close"].get(level, 0)
        parts.append(f"<h3>{_label(level)} ({_n(episodes)} episodes)</h3>")
        parts.append(_obligation_table(table))
    parts.append("<h2>Obligations by looked-after status</h2>")
    for group, table in r["cuts"]["looked_after"].items():
        episodes = r["episodes_by_cut"]["looked_after"].get(group, 0)
        parts.append(f"<h3>{_label(group)} ({_n(episodes)} episodes)</h3>")
        parts.append(_obligation_table(table) if table else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(report: dict[str, Any], out: Path) -> None:
    """By the file's suffix: .json, .html or .pdf."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        out.write_text(json.dumps(public_json(report), indent=2, default=str) + "\n")
    elif suffix == ".html":
        out.write_text(render_html(report), encoding="utf-8")
    elif suffix == ".pdf":
        from weasyprint import HTML

        HTML(string=render_html(report)).write_pdf(str(out))
    else:
        raise ValueError(f"{out.name}: the report is written as .html, .pdf or .json")
