"""The report's plots as inline SVG (matplotlib, Agg): text drawn as paths, so the SVG needs no
font and the HTML that embeds it makes no request of its own."""

from __future__ import annotations

import io
import re
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "mispers", "font.size": 9})

COLOURS = {
    "met_on_time": "#00703c",
    "met_late": "#f47738",
    "waived": "#505a5f",
    "overdue": "#d4351c",
}
RANK_COLOURS = {"sergeant": "#1d70b8", "inspector": "#f47738", "superintendent": "#d4351c"}


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = out.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return text[text.index("<svg") :]


def compliance(obligations: dict[str, dict[str, Any]]) -> str:
    kinds = list(obligations)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * max(len(kinds), 3) + 1))
    left = [0.0] * len(kinds)
    for outcome, colour in COLOURS.items():
        shares = [
            (obligations[k][outcome] / obligations[k]["due"]) if obligations[k]["due"] else 0.0
            for k in kinds
        ]
        ax.barh(kinds, shares, left=left, color=colour, label=outcome.replace("_", " "))
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of obligations due")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _svg(fig)


def time_to_found(time_missing: dict[str, Any]) -> str:
    names = [*time_missing["buckets"]]
    found = time_missing["found"] or 1
    shares = [time_missing["buckets"][n] / found for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    ax.bar([n.replace("_", " ") for n in names], shares, color="#1d70b8", label="this force")
    national = time_missing["national"]
    ax.axhline(national["within_24h"], color="#00703c", ls="--", lw=1)
    ax.text(3.4, national["within_24h"], "national: over 75% within 24 h", ha="right", va="bottom")
    ax.plot(
        [3], [national["over_7d"]], "D", color="#d4351c", label="national: about 2% over a week"
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of episodes found")
    ax.legend(frameon=False, loc="upper right")
    return _svg(fig)


def alerts_per_week(per_week: dict[str, dict[str, int]]) -> str:
    weeks = sorted(per_week)
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    for rank, colour in RANK_COLOURS.items():
        ax.plot(
            range(len(weeks)), [per_week[w].get(rank, 0) for w in weeks], color=colour, label=rank
        )
    step = max(len(weeks) // 8, 1)
    ax.set_xticks(range(0, len(weeks), step), [weeks[i] for i in range(0, len(weeks), step)])
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("alerts raised")
    ax.legend(frameon=False, ncol=3)
    return _svg(fig)


def time_to_acknowledge(bands: dict[str, int]) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    ax.bar([b.replace("_", " ") for b in bands], list(bands.values()), color="#1d70b8")
    ax.set_ylabel("alerts acknowledged")
    return _svg(fig)
