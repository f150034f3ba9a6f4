"""The overview's chart geometry: per-minute counts -> bars, axis and labels."""

from __future__ import annotations

import pytest

from genqueue.clock import FAKE_CLOCK_START
from genqueue.service.dashboard.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    BarChart,
    bar_chart,
    minute_label,
    nice_ceiling,
)

START = FAKE_CLOCK_START  # 2026-01-01T00:00:00Z


def chart(counts: list[int]) -> BarChart:
    return bar_chart(counts, START, name="throughput", title="Throughput", what="completed")


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (10, 10), (11, 20), (21, 50), (501, 1000)],
)
def test_nice_ceiling(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


def test_one_bar_per_minute_with_a_count() -> None:
    counts = [0] * 60
    counts[0], counts[30], counts[59] = 2, 3, 1
    found = chart(counts)
    assert [b.value for b in found.bars] == [2, 3, 1]
    assert (found.total, found.peak, found.top_value, found.minutes) == (6, 3, 5, 60)
    assert [b.title for b in found.bars] == [
        "00:00 UTC, completed: 2",
        "00:30 UTC, completed: 3",
        "00:59 UTC, completed: 1",
    ]


def test_bars_are_scaled_to_the_top_value_and_stand_on_the_baseline() -> None:
    found = chart([5, 0, 10, 4])  # top 10
    plot = HEIGHT - BOTTOM - TOP
    first, tallest, last = found.bars
    assert tallest.height == plot and tallest.y == TOP
    assert first.height == plot / 2
    assert last.height == pytest.approx(plot * 0.4, abs=0.01)
    for bar in found.bars:
        assert bar.y + bar.height == pytest.approx(found.baseline)


def test_bars_stay_inside_the_plot_in_order() -> None:
    found = chart([1] * 60)
    xs = [b.x for b in found.bars]
    assert xs == sorted(xs) and len(set(xs)) == 60
    assert xs[0] >= LEFT and xs[-1] + found.bars[-1].width <= WIDTH - RIGHT
    assert all(b.width > 0 for b in found.bars)


def test_a_small_count_under_a_large_peak_is_still_visible() -> None:
    found = chart([1000, 1])
    assert found.bars[1].height >= 1


def test_an_empty_hour_has_no_bars_but_an_axis_and_labels() -> None:
    found = chart([0] * 60)
    assert found.bars == ()
    assert (found.total, found.peak, found.top_value) == (0, 0, 1)
    assert [t.text for t in found.ticks] == ["00:00", "00:30", "00:59"]
    assert [t.anchor for t in found.ticks] == ["start", "middle", "end"]
    assert found.ticks[0].x == LEFT and found.ticks[-1].x == WIDTH - RIGHT


def test_one_minute_labels_from_the_left() -> None:
    [tick] = chart([4]).ticks
    assert (tick.text, tick.anchor, tick.x) == ("00:00", "start", LEFT)


def test_minute_labels_are_utc() -> None:
    assert minute_label(START + 13 * 3600 + 7 * 60 + 59) == "13:07"
