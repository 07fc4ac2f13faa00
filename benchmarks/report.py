"""Turns per-run samples into ONE reStructuredText table with targets.

Times and sizes are medians over runs. A ratio is the median of the per-run
ratios: the two sides of a ratio ran back to back in the same run, so noise
that hits one run hits both.
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
from collections.abc import Callable, Sequence

from .environment import MIB, Spec


@dataclasses.dataclass
class Sample:
    """One variant measured once, in its own process."""

    seconds: float
    rss_growth: int
    counts: dict[str, int]
    extras: dict[str, float]

    def reads(self) -> int:
        return self.counts.get("GET", 0) + self.counts.get("HEAD", 0)


Run = dict[str, Sample]  # variant -> its sample, for one run

#: (variant, label) in table order.
ROWS = [
    ("lazy", "getfile(), lazy: one blob per read"),
    ("prefetch", "getfile(prefetch=True, workers=W)"),
    ("readahead", "getfile(readahead=K, workers=K)"),
    ("sentry", "Sentry-style: pool of 4, storage.open()"),
    ("download_fileobj", "boto3 download_fileobj, one object"),
    ("raw_get", "raw GET limit: W threads into memory"),
    ("putfile", "File.putfile(workers=W), new content"),
    ("sequential", "storage.save() per blob, sequential"),
    ("upload_fileobj", "boto3 upload_fileobj, one object"),
    ("putfile_again", "putfile again, same content"),
]
UPLOADS = {"putfile", "sequential", "upload_fileobj", "putfile_again"}
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal checked against the median of a per-run value."""

    row: str  # the variant it is printed beside
    label: str
    needs: tuple[str, ...]
    value: Callable[[Run], float]
    op: str
    goal: float
    unit: str = "x"
    note: Callable[[list[Run]], str] | None = None


def _time_ratio(a: str, b: str) -> Callable[[Run], float]:
    return lambda run: run[a].seconds / run[b].seconds


def _median_extra(runs: list[Run], variant: str, name: str) -> float:
    return statistics.median(run[variant].extras[name] for run in runs)


def _per_blob(variant: str, spec: Spec) -> Callable[[Run], float]:
    return lambda run: run[variant].reads() / spec.blobs


def targets(spec: Spec, big: bool) -> list[Target]:
    blob_mib = spec.blob_size / MIB
    if big:
        return [
            Target(
                "prefetch",
                "peak RSS growth",
                ("prefetch",),
                lambda run: run["prefetch"].rss_growth / MIB,
                "<",
                150,
                " MiB",
            ),
        ]
    one_per_blob = [
        Target(v, "requests per blob", (v,), _per_blob(v, spec), "==", 1, "")
        for v in ("lazy", "prefetch", "readahead")
    ]
    return [
        *one_per_blob,
        Target(
            "lazy",
            "lazy / prefetch",
            ("lazy", "prefetch"),
            _time_ratio("lazy", "prefetch"),
            ">=",
            8,
        ),
        Target(
            "prefetch",
            "prefetch / download_fileobj",
            ("prefetch", "download_fileobj"),
            _time_ratio("prefetch", "download_fileobj"),
            "<=",
            0.9,
        ),
        Target(
            "prefetch",
            "prefetch / raw GET limit",
            ("prefetch", "raw_get"),
            _time_ratio("prefetch", "raw_get"),
            "<=",
            1.2,
        ),
        Target(
            "readahead",
            "readahead / prefetch",
            ("readahead", "prefetch"),
            _time_ratio("readahead", "prefetch"),
            "<=",
            1.2,
        ),
        Target(
            "readahead",
            "first byte / blob RTT",
            ("readahead",),
            lambda run: run["readahead"].extras["ttfb"] / run["readahead"].extras["blob_rtt"],
            "<=",
            2,
            " RTT",
            note=lambda runs: "{:.0f} ms / {:.0f} ms".format(
                _median_extra(runs, "readahead", "ttfb") * 1000,
                _median_extra(runs, "readahead", "blob_rtt") * 1000,
            ),
        ),
        Target(
            "readahead",
            "peak RSS growth",
            ("readahead",),
            lambda run: run["readahead"].rss_growth / spec.blob_size,
            "<",
            spec.readahead + 2,
            " blobs",
            note=lambda runs: f"{blob_mib:g} MiB each",
        ),
        Target(
            "sentry",
            "sentry / prefetch",
            ("sentry", "prefetch"),
            _time_ratio("sentry", "prefetch"),
            ">=",
            2,
        ),
        Target(
            "putfile",
            "sequential / putfile",
            ("sequential", "putfile"),
            _time_ratio("sequential", "putfile"),
            ">=",
            6,
        ),
        Target(
            "putfile",
            "putfile / upload_fileobj",
            ("putfile", "upload_fileobj"),
            _time_ratio("putfile", "upload_fileobj"),
            "<=",
            1.2,
        ),
        Target(
            "putfile_again",
            "PUT requests",
            ("putfile_again",),
            lambda run: run["putfile_again"].counts.get("PUT", 0),
            "==",
            0,
            "",
        ),
    ]


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _requests(samples: Sequence[Sample]) -> str:
    methods = sorted({m for s in samples for m in s.counts})
    medians = {m: statistics.median(s.counts.get(m, 0) for s in samples) for m in methods}
    return ", ".join(f"{_num(n)} {m}" for m, n in medians.items() if n) or "0"


def table(spec: Spec, runs: list[Run], big: bool) -> str:
    """The measurements and targets as one RST simple table."""
    header = [
        "variant",
        "seconds",
        "MiB/s",
        "requests",
        "per blob",
        "RSS +MiB",
        "check",
        "measured",
        "target",
        "result",
    ]
    rows: list[list[str]] = []
    checks = targets(spec, big)
    for variant, label in ROWS:
        samples = [run[variant] for run in runs if variant in run]
        if not samples:
            continue
        seconds = statistics.median(s.seconds for s in samples)
        kind = "PUT" if variant in UPLOADS else None
        per_blob = statistics.median(
            (s.counts.get("PUT", 0) if kind else s.reads()) / spec.blobs for s in samples
        )
        cells = [
            label,
            f"{seconds:.2f}",
            f"{spec.size / MIB / seconds:.0f}",
            _requests(samples),
            f"{per_blob:.2f}",
            f"{statistics.median(s.rss_growth for s in samples) / MIB:.1f}",
        ]
        mine = [t for t in checks if t.row == variant]
        if not mine:
            rows.append([*cells, "", "", "", ""])
        for i, target in enumerate(mine):
            usable = [run for run in runs if all(v in run for v in target.needs)]
            value = statistics.median(target.value(run) for run in usable)
            measured = f"{value:.2f}{target.unit}" if target.unit else _num(value)
            if target.note is not None:
                measured += f" ({target.note(usable)})"
            ok = OPS[target.op](round(value, 6), target.goal)
            goal = f"{target.op} {_num(target.goal)}{target.unit}"
            lead = cells if i == 0 else ['"', *[""] * (len(cells) - 1)]
            rows.append([*lead, target.label, measured, goal, "PASS" if ok else "MISS"])
    return _rst(header, rows)


def _rst(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in rows), rule])
