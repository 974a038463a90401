"""Presentation helpers of the console: side-by-side policy diffs and inline SVG charts,
computed on the server (no JavaScript chart library, nothing fetched from outside).

They shape what the use cases answered; they decide nothing. Every string they return is
plain data for the templates, which escape it (autoescape on): nothing here builds markup
from a client-controlled value.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_DIFF_LINES = 2000  # a policy is at most 32 KB; beyond this many lines, no diff


@dataclass(frozen=True)
class DiffRow:
    kind: str  # equal, replace, delete, insert
    left_number: int | None
    left: str
    right_number: int | None
    right: str


def pretty_policy(text: str) -> str:
    """A policy as people compare it: its JSON indented (members in their own order), or
    the text as it was when it is no JSON."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def side_by_side(before: str, after: str) -> list[DiffRow]:
    """The lines of ``before`` and ``after`` (pretty-printed policies) aligned in pairs."""
    left, right = before.splitlines(), after.splitlines()
    if len(left) > MAX_DIFF_LINES or len(right) > MAX_DIFF_LINES:
        left, right = left[:MAX_DIFF_LINES], right[:MAX_DIFF_LINES]
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                DiffRow("equal", i1 + k + 1, left[i1 + k], j1 + k + 1, right[j1 + k])
                for k in range(i2 - i1)
            )
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            has_left, has_right = i1 + k < i2, j1 + k < j2
            kind = "replace" if has_left and has_right else "delete" if has_left else "insert"
            rows.append(
                DiffRow(
                    kind,
                    i1 + k + 1 if has_left else None,
                    left[i1 + k] if has_left else "",
                    j1 + k + 1 if has_right else None,
                    right[j1 + k] if has_right else "",
                )
            )
    return rows


# ==== charts ==================================================================================
@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the bar's category (its tooltip and its axis label)
    value: int


@dataclass(frozen=True)
class BarChart:
    """A bar chart laid out for an SVG of ``width`` x ``height`` (user units)."""

    width: int
    height: int
    bars: list[Bar]
    maximum: int
    ticks: list[tuple[float, int]]  # (y, value) of the horizontal grid lines
    axis_labels: list[tuple[float, str]]  # (x, text) under the bars, a few only
    title: str
    plot_left: int
    plot_bottom: int

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)


def bar_chart(
    points: Sequence[tuple[str, int]],
    *,
    title: str,
    width: int = 720,
    height: int = 220,
    max_labels: int = 8,
) -> BarChart:
    """``points`` (label, value) as bars, left to right, on a scale from zero."""
    left, right, top, bottom = 48, 8, 12, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    maximum = max((value for _, value in points), default=0)
    scale_top = _nice(maximum)
    count = max(len(points), 1)
    slot = plot_width / count
    bars = []
    for index, (label, value) in enumerate(points):
        bar_height = plot_height * value / scale_top if scale_top else 0.0
        bars.append(
            Bar(
                x=round(left + index * slot + slot * 0.1, 2),
                y=round(top + plot_height - bar_height, 2),
                width=round(max(slot * 0.8, 1.0), 2),
                height=round(bar_height, 2),
                label=label,
                value=value,
            )
        )
    ticks = [
        (round(top + plot_height - plot_height * step / 4, 2), scale_top * step // 4)
        for step in range(5)
    ]
    every = max(1, -(-len(points) // max_labels))
    axis_labels = [
        (round(left + index * slot + slot / 2, 2), label)
        for index, (label, _) in enumerate(points)
        if index % every == 0
    ]
    return BarChart(
        width, height, bars, maximum, ticks, axis_labels, title, left, top + plot_height
    )


def _nice(value: int) -> int:
    """The smallest round number (1, 2 or 5 times a power of ten, times 4) not below
    ``value``: the chart's top, so its four grid lines fall on whole numbers."""
    if value <= 0:
        return 4
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude * 4 >= value:
                return step * magnitude * 4
        magnitude *= 10


CATEGORY_COLUMNS = ("status", "access", "key_state", "reported_state", "rotation_enabled")


def report_chart(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> BarChart | None:
    """A chart of a report: its rows counted by their first categorical column (a
    control's status, a key's state, a principal's access); None when it has none."""
    column = next((name for name in CATEGORY_COLUMNS if name in columns), None)
    if column is None or not rows:
        return None
    counts = Counter("" if row.get(column) is None else str(row.get(column)) for row in rows)
    points = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:12]
    return bar_chart(points, title=f"Rows by {column}", height=200, max_labels=12)
