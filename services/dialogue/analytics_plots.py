"""PNG charts of a stats report (`parley stats --plots DIR`), drawn by matplotlib's Agg backend.

matplotlib comes with the `train` extra; without it, `write_plots` raises `PlotsUnavailable`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import PermanentError
from services.dialogue.analytics import LATENCY_EDGES, StatsReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "PlotsUnavailable", "write_plots"]

PLOTS = ("activity.png", "confidence.png", "latency.png", "feedback.png")


class PlotsUnavailable(PermanentError):
    """matplotlib is not installed."""


def _figure() -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailable(
            "--plots needs matplotlib: install Parley with the `train` extra (make install)"
        ) from exc
    # A bare Figure draws with Agg and touches no global pyplot state.
    return Figure(figsize=(8, 4), dpi=100, layout="constrained")


def _activity(report: StatsReport, ax: Any) -> None:
    days = [d.day for d in report.days]
    x = list(range(len(days)))
    ax.bar(x, [d.turns for d in report.days], color="#9ecae1", label="turns")
    ax.plot(
        x,
        [d.conversations for d in report.days],
        color="#08519c",
        marker="o",
        label="conversations",
    )
    ax.set_xticks(x, days, rotation=45, ha="right", fontsize=7)
    ax.set_title("Conversations and turns per day (UTC)")
    ax.legend()


def _confidence(report: StatsReport, ax: Any) -> None:
    bins = len(report.confidence_histogram)
    ax.bar(
        [i / bins for i in range(bins)],
        report.confidence_histogram,
        width=1 / bins,
        align="edge",
        color="#74c476",
        edgecolor="white",
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("intent confidence")
    ax.set_ylabel("turns")
    ax.set_title("Intent confidence")


def _latency(report: StatsReport, ax: Any) -> None:
    labels = [f"≥{edge:g}s" for edge in LATENCY_EDGES]
    ax.bar(range(len(labels)), report.latency.histogram, color="#fd8d3c")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    p50, p95 = report.latency.p50, report.latency.p95
    summary = "no turns" if p50 is None else f"p50 {p50:.3f} s, p95 {p95 or 0:.3f} s"
    ax.set_title(f"Turn latency ({summary})")
    ax.set_ylabel("turns")


def _feedback(report: StatsReport, ax: Any) -> None:
    days = [d.day for d in report.days]
    x = list(range(len(days)))
    for scale, color in (("thumbs", "#6a51a3"), ("stars", "#e6550d")):
        points = [
            (i, d.feedback[scale]["average"])
            for i, d in enumerate(report.days)
            if scale in d.feedback
        ]
        if points:
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                color=color,
                label=f"{scale} (average)",
            )
    ax.set_xticks(x, days, rotation=45, ha="right", fontsize=7)
    ax.set_title("Feedback ratings per day")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def write_plots(report: StatsReport, folder: Path) -> list[Path]:
    """Write the four charts into `folder` (created if needed); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in zip(PLOTS, (_activity, _confidence, _latency, _feedback), strict=True):
        figure = _figure()
        draw(report, figure.add_subplot())
        path = folder / name
        figure.savefig(path, format="png")
        written.append(path)
    return written
