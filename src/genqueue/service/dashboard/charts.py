"""Bar charts of per-minute counts, as geometry the overview's template draws in SVG.

This module turns numbers into coordinates and words; it writes no markup (the template
``_chart.html`` draws) and reads no storage (``genqueue.analytics.series`` does). The
charts are drawn on the server so the page needs no script, and the template colours
them through classes in ``dashboard.css``, never style attributes: the dashboard's
Content-Security-Policy allows neither inline script nor inline style.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

#: The drawing's own units (the SVG's viewBox); CSS scales it to the card's width.
WIDTH = 360
HEIGHT = 120
#: Room for the value labels on the left and the time labels below.
LEFT, RIGHT, TOP, BOTTOM = 30, 4, 6, 18
#: Share of each minute's slot left empty between bars.
GAP = 0.2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    #: Shown on hover (the SVG ``<title>``): the minute and its count.
    title: str


@dataclass(frozen=True)
class Tick:
    """A time label under the bars; ``anchor`` is SVG's ``text-anchor``."""

    x: float
    text: str
    anchor: str


@dataclass(frozen=True)
class BarChart:
    #: Names the chart in ids and classes: ``chart-{name}``.
    name: str
    title: str
    #: What is counted, as in "failed attempts per minute".
    what: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    #: The value at the top of the axis: a round number, at least the largest count.
    top_value: int
    total: int
    peak: int
    minutes: int
    width: int = WIDTH
    height: int = HEIGHT
    left: float = LEFT
    top: float = TOP
    right: float = WIDTH - RIGHT
    baseline: float = HEIGHT - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value``."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def minute_label(start: float) -> str:
    """``HH:MM`` (UTC) of the minute starting at ``start``, in epoch seconds."""
    return time.strftime("%H:%M", time.gmtime(start))


def bar_chart(
    counts: Sequence[int], start: float, *, name: str, title: str, what: str, step: float = 60.0
) -> BarChart:
    """One bar per minute with a count (minutes with none get no bar), scaled so the
    tallest reaches a round ``top_value``; ``counts[i]`` is the minute at ``start + i*step``."""
    n = max(len(counts), 1)
    peak = max(counts, default=0)
    top_value = nice_ceiling(peak)
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - RIGHT - LEFT) / n
    bars = []
    for i, value in enumerate(counts):
        if value <= 0:
            continue
        height = max(value / top_value * plot_height, 1.0)  # a count of 1 stays visible
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * GAP / 2, 2),
                y=round(HEIGHT - BOTTOM - height, 2),
                width=round(max(slot * (1 - GAP), 1.0), 2),
                height=round(height, 2),
                value=value,
                title=f"{minute_label(start + i * step)} UTC, {what}: {value}",
            )
        )
    return BarChart(
        name=name,
        title=title,
        what=what,
        bars=tuple(bars),
        ticks=_ticks(len(counts), start, step, slot),
        top_value=top_value,
        total=sum(counts),
        peak=peak,
        minutes=len(counts),
    )


def _ticks(n: int, start: float, step: float, slot: float) -> tuple[Tick, ...]:
    # The first, middle and last minutes, anchored so no label runs off the drawing.
    if n == 0:
        return ()
    places = sorted({0, n // 2, n - 1})
    anchors = {n - 1: "end", 0: "start"}  # one minute only: its label starts at the left
    return tuple(
        Tick(
            x=round(LEFT + i * slot + (0 if i == 0 else slot if i == n - 1 else slot / 2), 2),
            text=minute_label(start + i * step),
            anchor=anchors.get(i, "middle"),
        )
        for i in places
    )
