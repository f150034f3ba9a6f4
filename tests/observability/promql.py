"""Just enough PromQL reading to list the series and labels an expression uses.

``read(expr)`` returns its selectors (metric name and label matchers) and the label
names of its ``by``/``without``/``on``/``ignoring``/``group_*`` clauses. Syntax is
promtool's job; this only has to find names, and fails loudly on what it cannot read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>\d[\w.]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>(){}\[\],@])
    """,
    re.VERBOSE,
)

GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
#: Aggregations may put their ``by (...)`` before the parenthesis: ``sum by (a) (x)``.
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
#: Grafana's interval variables, as a scrape-independent duration.
INTERVALS = ("$__rate_interval", "$__interval", "$__range")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Selector:
    name: str
    matchers: list[Matcher] = field(default_factory=list)


@dataclass
class Query:
    selectors: list[Selector] = field(default_factory=list)
    #: (clause, labels) in the order they appear.
    groupings: list[tuple[str, frozenset[str]]] = field(default_factory=list)


def concrete(expr: str) -> str:
    """``expr`` with Grafana's interval variables replaced by a duration."""
    for variable in INTERVALS:
        expr = expr.replace(variable, "5m")
    return expr


def tokens(expr: str) -> list[tuple[str, str]]:
    expr = concrete(expr)
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
    return out


def read(expr: str) -> Query:
    toks = tokens(expr)
    query = Query()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "op" and text == "[":  # a range or subquery: durations only
            i = toks.index(("op", "]"), i) + 1
            continue
        if kind == "op" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if kind != "ident" or text in KEYWORDS or text in AGGREGATIONS:
            i += 1
            continue
        if text in GROUPING and following == "(":
            end = toks.index(("op", ")"), i)
            labels = frozenset(t for k, t in toks[i + 2 : end] if k == "ident")
            query.groupings.append((text, labels))
            i = end + 1
        elif following == "(" or text in GROUPING:  # a function or an aggregation
            i += 1
        else:
            selector = Selector(text)
            query.selectors.append(selector)
            i += 1
            if following == "{":
                i = _matchers(toks, i + 1, selector, expr)
    return query


def _matchers(toks: list[tuple[str, str]], i: int, selector: Selector, expr: str) -> int:
    """Read ``label op "value"`` pairs up to the closing brace; return the index after it."""
    while toks[i][1] != "}":
        (lk, label), (_, op), (vk, value) = toks[i : i + 3]
        if lk != "ident" or vk != "string":
            raise ValueError(f"cannot read the matchers of {selector.name} in {expr!r}")
        selector.matchers.append(Matcher(label, op, value[1:-1]))
        i += 3
        if toks[i][1] == ",":
            i += 1
    return i + 1
