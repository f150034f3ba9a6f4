"""Counts, amounts and durations in words people read: "1 generation", "$0.25", "40 s".

Used wherever genqueue writes for a person (the command line, the demo's summary, error
messages that quote a charge). Machine-readable output (``--json``, events, stored
records) keeps the raw numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Units whose plural is not the unit plus "s".
_PLURALS = {"entry": "entries", "retry": "retries", "redrive": "redrives", "usd": "usd"}


def plural(count: float, noun: str, plural_form: str | None = None) -> str:
    """``plural(1, "job")`` -> "1 job"; ``plural(3, "entry")`` -> "3 entries"."""
    text = number(count)
    if text == "1":  # 0.9999999 generations reads "1 generation"
        return f"{text} {noun}"
    return f"{text} {plural_form or _PLURALS.get(noun) or noun + 's'}"


def number(value: float) -> str:
    """An integer as such, else at most one decimal (``2.9``), never ``2.9000001``."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return str(round(value))
    rounded = round(value, 1)
    if rounded == 0:
        # A small amount stays visible (0.0091); float noise (3e-09) is nothing.
        return f"{value:.2g}" if abs(value) >= 1e-6 else "0"
    return f"{rounded:g}"


def amount(value: float, unit: str) -> str:
    """One cost: "$0.25" for USD, "102.8 generations" for anything else."""
    if unit.lower() == "usd":
        if value and abs(value) < 0.005:
            return f"${value:.2g}"  # a fraction of a cent stays visible
        return f"${value:,.2f}"
    if unit.endswith("s"):
        return plural(value, unit[:-1], unit)
    return plural(value, unit)


def amounts(costs: Mapping[str, float], empty: str = "0") -> str:
    """Several costs, USD first: "$4.75, 475 generations"."""
    units = sorted(costs, key=lambda unit: (unit.lower() != "usd", unit))
    return ", ".join(amount(costs[unit], unit) for unit in units) or empty


def seconds(value: float) -> str:
    """A duration: "7 ms", "1.6 s", "40 s", "12 min", "2.5 h", "3.1 d"."""
    value = abs(value)
    if value < 0.9995:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{number(round(value, 1))} s"
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    if value < 86400:
        return f"{number(round(value / 3600, 1))} h"
    return f"{number(round(value / 86400, 1))} d"
