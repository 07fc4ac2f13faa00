"""The report: targets with PASS/MISS, and RST tables a suite fills.

A suite returns a ``Section``: a title, tables and ``Check`` results. Each
check has a kind: ``CORRECTNESS`` (exact bytes; a MISS always fails the run,
as does a crashed variant), ``COUNT`` (a figure noise cannot move: requests
per blob, queries to open a file, PUTs of stored content; a MISS fails the
run with ``--strict``) or ``MEASURE`` (time and memory, noisy on a shared
machine: a MISS is printed, never failed).
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

CORRECTNESS, COUNT, MEASURE = "correctness", "count", "measure"
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclasses.dataclass(frozen=True)
class Check:
    """One target, measured: ``value`` against ``op goal``."""

    label: str
    value: float | None  # None: the variants it needs failed
    op: str
    goal: float
    unit: str = "x"
    kind: str = MEASURE
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.value is not None and OPS[self.op](round(self.value, 6), self.goal)

    def cells(self) -> list[str]:
        measured = "failed" if self.value is None else f"{num(self.value)}{self.unit}"
        if self.note:
            measured += f" ({self.note})"
        result = "PASS" if self.passed else "MISS"
        return [
            self.label,
            measured,
            f"{self.op} {num(self.goal)}{self.unit}",
            result if self.passed or self.kind == MEASURE else f"{result} ({self.kind})",
        ]


@dataclasses.dataclass
class Section:
    """What one suite reports."""

    title: str
    tables: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def render(self) -> str:
        parts = [self.title, "~" * len(self.title), ""]
        for text in self.tables:
            parts += [text, ""]
        if self.checks:
            parts += [checks_table(self.checks), ""]
        parts += [*self.notes]
        return "\n".join(parts).rstrip()


def num(value: float) -> str:
    """A figure with as many digits as it deserves."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def median(values: Iterable[float]) -> float | None:
    """The median, or None if there is nothing (every sample failed)."""
    found = list(values)
    return statistics.median(found) if found else None


class Timed(Protocol):
    seconds: float


def median_seconds(samples: Sequence[Timed | None]) -> float | None:
    """The median time of the samples that ran (None: a crashed variant)."""
    return median(s.seconds for s in samples if s is not None)


def median_ratio(a: Sequence[Timed | None], b: Sequence[Timed | None]) -> float | None:
    """Median of per-run ``a / b`` time ratios: both sides measured in the same run."""
    pairs = [
        x.seconds / y.seconds for x, y in zip(a, b, strict=True) if x is not None and y is not None
    ]
    return median(pairs)


def checks_table(checks: list[Check]) -> str:
    return rst(["target", "measured", "goal", "result"], [c.cells() for c in checks])


def rst(header: list[str], rows: list[list[str]]) -> str:
    """An RST simple table (columns padded; the last one may run long)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])
