"""The inspection report at national scale: a synthetic year into the analytics store through the
offline driver, then the year's report over it.

1. Synthesis: `--episodes` episodes (default 200,000: England and Wales report about 199,000
   child missing incidents a year, NCA 2019/20) over 365 days, shaped as `mispers synth` shapes
   them, run through the offline driver on `--processes` worker processes (default: every core)
   and written to the store as each worker finishes a batch (progress bar). Target: 10 minutes
   on 2 cores for the national year.
2. Report: the year's figures (`mispers report`'s computation) over the store, then the HTML and
   the PDF. Target: 30 seconds for the figures and HTML.

`--store parquet` (default) writes the Parquet layout of MISPERS_ANALYTICS; `--store duckdb` the
embedded DuckDB file. A run with fewer episodes is labelled as such, with the national year
extrapolated linearly from its rate (the work is per episode; the report's queries scale
linearly in rows)."""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import year
from bench.common import Figure, console
from bench.year import NATIONAL_EPISODES as NATIONAL_YEAR
from bench.year import START
from mispers.analytics.document import render_html, write_report
from mispers.analytics.figures import compute
from mispers.analytics.store import open_store

SYNTH_TARGET_S = 600.0
REPORT_TARGET_S = 30.0


def run(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    analytics = str(work_dir / "analytics") if args.store == "parquet" else None
    store = open_store(work_dir, analytics)
    started = time.monotonic()
    cpu_before = _cpu()
    made = events = 0
    for done in year.synthetic_year(
        args, "synthetic year into the store", data_dir=str(work_dir), analytics=analytics
    ):
        made += done.episodes
        events += done.events
    synth_s = time.monotonic() - started
    synth_cpu_s = _cpu() - cpu_before
    console.print(
        f"{made:,} episodes, {events:,} events in {synth_s:.1f} s into {store.describe()}"
    )

    started = time.monotonic()
    cpu_before = time.process_time()  # DuckDB's threads included
    con = store.reader()
    figures = compute(con, START.date(), dt.date(2026, 12, 31))
    con.close()
    figures_s = time.monotonic() - started
    figures_cpu_s = time.process_time() - cpu_before
    html = work_dir / "report.html"
    write_report(figures, html)
    html_s = time.monotonic() - started
    pdf_s = None
    pages = None
    if not args.no_pdf:
        from weasyprint import HTML

        t = time.monotonic()
        document = HTML(string=render_html(figures)).render()
        document.write_pdf(str(work_dir / "report.pdf"))
        pdf_s = time.monotonic() - t
        pages = len(document.pages)
    cost = export_cost(args.export_records, work_dir) if args.export_records else {}
    rows = {}
    con = store.reader()
    for table in ("episodes", "obligations", "alerts", "grades"):
        rows[table] = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    con.close()
    return {
        "episodes": made,
        "events": events,
        "rows": rows,
        "synth_s": synth_s,
        "synth_cpu_s": synth_cpu_s,
        "figures_s": figures_s,
        "figures_cpu_s": figures_cpu_s,
        "figures_and_html_s": html_s,
        "pdf_s": pdf_s,
        "pdf_pages": pages,
        "report_episodes": figures["episodes"],
        "store": store.describe(),
        "export_cost": cost,
    }


def export_cost(count: int, work_dir: Path) -> dict[str, float]:
    """The close-time export's own cost: one record a write, as the activity writes them,
    into a fresh DuckDB file and a fresh Parquet directory (median and p95 ms a write)."""
    from bench.common import median, percentile
    from mispers.analytics.record import episode_record
    from mispers.offline.synth import synthesize
    from mispers.policy import load_policy

    records = [
        episode_record(e.state, "bench", e.state.closed_at or START)
        for e in synthesize(count, 60, 7, load_policy(), START)
    ]
    out: dict[str, float] = {}
    for kind, analytics in (("duckdb", None), ("parquet", str(work_dir / "export-pq"))):
        store = open_store(work_dir / f"export-{kind}", analytics)
        times = []
        for record in records:
            t = time.perf_counter()
            store.write([record])
            times.append(time.perf_counter() - t)
        out[f"{kind}_median_ms"] = median(times) * 1000
        out[f"{kind}_p95_ms"] = percentile(times, 95) * 1000
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished workers: on a shared machine the wall
    time depends on the neighbours, the CPU time much less."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def figures_of(result: dict[str, Any], args: argparse.Namespace) -> list[Figure]:
    scale = NATIONAL_YEAR / max(result["episodes"], 1)
    label = "" if scale <= 1.01 else f" (measured at {result['episodes']:,}, x{scale:.1f})"
    synth_national = result["synth_s"] * scale
    report_national = result["figures_and_html_s"] * scale
    out = [
        Figure(
            "synthetic episodes into the store",
            result["episodes"] / result["synth_s"],
            "episodes/s",
            note=f"{result['events']:,} events, {args.processes or 'all'} processes",
        ),
        Figure(
            "national year into the store" + label,
            synth_national,
            "s",
            target=f"<= {SYNTH_TARGET_S:.0f} s",
            ok=synth_national <= SYNTH_TARGET_S,
            note="extrapolated linearly" if label else "",
        ),
        Figure(
            "national year into the store, CPU / 2 cores" + label,
            result["synth_cpu_s"] * scale / 2,
            "s",
            target=f"<= {SYNTH_TARGET_S:.0f} s",
            ok=result["synth_cpu_s"] * scale / 2 <= SYNTH_TARGET_S,
            note="what 2 free cores would take",
        ),
        Figure(
            "year's figures and HTML" + label,
            report_national,
            "s",
            target=f"<= {REPORT_TARGET_S:.0f} s",
            ok=report_national <= REPORT_TARGET_S,
            note="extrapolated linearly" if label else "",
        ),
    ]
    figures_cpu_national = result["figures_cpu_s"] * scale
    out.append(
        Figure(
            "year's figures, CPU" + label,
            figures_cpu_national,
            "s",
            note="DuckDB's threads included; the wall time on 2 free cores is about half",
        )
    )
    for kind in ("duckdb", "parquet"):
        if f"{kind}_median_ms" in result["export_cost"]:
            out.append(
                Figure(
                    f"close-time export, one record ({kind})",
                    result["export_cost"][f"{kind}_median_ms"],
                    "ms",
                    note=f"p95 {result['export_cost'][f'{kind}_p95_ms']:.0f} ms",
                )
            )
    if result["pdf_s"] is not None:
        out.append(Figure("PDF", result["pdf_s"], "s", note=f"{result['pdf_pages']} pages"))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = year.parser("python -m bench.report", __doc__, NATIONAL_YEAR)
    parser.add_argument("--store", choices=("parquet", "duckdb"), default="parquet")
    parser.add_argument("--keep", type=Path, default=None, help="keep the store and report here")
    parser.add_argument("--no-pdf", action="store_true")
    parser.add_argument(
        "--export-records", type=int, default=200, help="records for the export cost (0: skip)"
    )
    return year.parse(parser, argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = year.start(args)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory() as work:
            result = run(args, Path(work))
    figs = figures_of(result, args)
    return year.finish("report", "Inspection report at scale", args, info, figs, {"result": result})


if __name__ == "__main__":
    main()
