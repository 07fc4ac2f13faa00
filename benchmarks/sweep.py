"""The blob-size sweep and the comparisons at the default settings (issue 11).

Each run stores fresh bytes for the uploads, then walks the blob sizes (in a
rotated order); at each size it measures every read mode, the raw-GET ceiling
and ``putfile``, and at the default size also ``read()`` of the whole file,
boto3's transfer manager both ways, a Sentry-style read and upload, and
``putfile`` of the same content again. Variant order rotates per run, so the
two sides of a ratio always ran minutes apart at most, under the same load.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

from .environment import MIB, write_random_file
from .harness import Bench, Sample, log, rotated
from .report import COUNT, Check, Section, median, num, rst

GIB = 1024 * MIB
#: Measured at every blob size.
PER_SIZE = ["lazy", "default", "readahead", "prefetch", "raw_get", "putfile"]
#: Measured at the default blob size only.
AT_DEFAULT = [
    "default_read",
    "raw_get_file",
    "download_fileobj",
    "sentry",
    "upload_fileobj",
    "sequential",
]
#: The streaming and prefetch modes: one GET per blob, exactly.
MODES = ["lazy", "default", "readahead", "prefetch"]
#: putfile's memory bound beyond its blobs: interpreter, boto3 buffers, SQL.
PUTFILE_FIXED_MIB = 8

Run = dict[int, dict[str, Sample | None]]  # blob size -> variant -> sample (one run)

LABELS = {
    "lazy": "getfile(readahead=False): one blob at a time",
    "default": "getfile(), copyfileobj: the default",
    "default_read": "getfile().read(): whole file",
    "readahead": "getfile(readahead=True)",
    "prefetch": "getfile(prefetch=True)",
    "raw_get": "raw GET limit: W threads into memory",
    "raw_get_file": "raw GETs into a temp file, read back",
    "sentry": "Sentry-style: pool of 4, storage.open()",
    "download_fileobj": "boto3 download_fileobj, one object",
    "putfile": "File.putfile(), new content",
    "sequential": "storage.save() per blob, sequential",
    "upload_fileobj": "boto3 upload_fileobj, one object",
    "putfile_again": "putfile again, same content",
}


def run(bench: Bench) -> Section:
    sizes = [int(mib * MIB) for mib in bench.args.blob_sizes]
    default = bench.args.default_blob_size
    if default not in sizes:
        sizes.append(default)
    sizes.sort()
    runs: list[Run] = []
    for r in range(bench.args.runs):
        log(f"sweep run {r + 1}/{bench.args.runs}")
        source = bench.workfile(f"upload-{r}.bin")
        write_random_file(source, bench.spec.size)  # fresh bytes: putfile really uploads
        one: Run = {}
        for size in rotated(sizes, r):
            spec = bench.stored_file(size).replace(source_path=source)
            variants = rotated(PER_SIZE + (AT_DEFAULT if size == default else []), r)
            label = f"{size / MIB:g} MiB"
            one[size] = {v: bench.measure(spec, v, label) for v in variants}
            if size == default:  # after putfile of the same bytes, same blob size
                one[size]["putfile_again"] = bench.measure(spec, "putfile_again", label)
        os.remove(source)
        runs.append(one)
    return _section(bench, sizes, default, runs)


class Results:
    """Medians over runs of the sweep's samples; None where a variant failed."""

    def __init__(self, runs: list[Run], file_size: int) -> None:
        self.runs = runs
        self.file_size = file_size

    def blobs(self, size: int) -> int:
        return -(-self.file_size // size)

    def value(
        self, size: int, fn: Callable[[dict[str, Sample]], float], *needs: str
    ) -> float | None:
        """Median over runs of ``fn`` where every variant it needs was measured."""
        values = []
        for one in self.runs:
            got = one.get(size, {})
            if all(got.get(v) is not None for v in needs):
                values.append(fn({v: s for v, s in got.items() if s is not None}))
        return median(values)

    def ratio_across(self, size: int, a: str, other: int, b: str) -> float | None:
        """Per-run ratio of ``a`` at ``size`` to ``b`` measured at blob size ``other``."""
        values = []
        for one in self.runs:
            x, y = one.get(size, {}).get(a), one.get(other, {}).get(b)
            if x is not None and y is not None:
                values.append(x.seconds / y.seconds)
        return median(values)

    def ratio(self, size: int, a: str, b: str) -> float | None:
        """Median of the per-run ratios of seconds: noise that hits a run hits both sides."""
        return self.value(size, lambda s: s[a].seconds / s[b].seconds, a, b)

    def seconds(self, size: int, v: str) -> float | None:
        return self.value(size, lambda s: s[v].seconds, v)

    def rss_mib(self, size: int, v: str) -> float | None:
        return self.value(size, lambda s: s[v].rss_growth / MIB, v)

    def per_blob(self, size: int, v: str, method: str) -> float | None:
        """Requests of ``method`` per blob of the file."""
        blobs = self.blobs(size)
        return self.value(size, lambda s: s[v].counts.get(method, 0) / blobs, v)

    def samples(self, size: int, v: str) -> list[Sample]:
        return [s for one in self.runs if (s := one.get(size, {}).get(v)) is not None]


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "failed" if value is None else fmt.format(value)


def _section(bench: Bench, sizes: list[int], default: int, runs: list[Run]) -> Section:
    spec = bench.spec
    res = Results(runs, spec.size)
    section = Section(
        f"Blob-size sweep: {spec.size / MIB:g} MiB file, K={spec.readahead}, W={spec.workers}, "
        f"medians of {len(runs)} interleaved run(s)"
    )
    times, memory = [], []
    for size in sizes:
        mib = f"{size / MIB:g}" + (" (default)" if size == default else "")
        per_gib = GIB / size
        get, put = res.per_blob(size, "prefetch", "GET"), res.per_blob(size, "putfile", "PUT")
        times.append(
            [
                mib,
                *(_cell(res.seconds(size, v)) for v in PER_SIZE),
                _cell(res.ratio(size, "prefetch", "raw_get")),
                _cell(res.ratio(size, "default", "readahead")),
                _cell(res.ratio_across(size, "prefetch", default, "download_fileobj")),
            ]
        )
        memory.append(
            [
                mib,
                *(_cell(res.rss_mib(size, v), "{:.0f}") for v in [*MODES, "putfile"]),
                _cell(None if get is None else get * per_gib, "{:.0f}"),
                _cell(None if put is None else put * per_gib, "{:.0f}"),
            ]
        )
    section.tables.append(
        "Seconds (medians):\n\n"
        + rst(
            ["blob MiB", *PER_SIZE, "prefetch/raw_get", "default/readahead", "prefetch/boto3"],
            times,
        )
    )
    section.tables.append(
        "Peak RSS growth (MiB, medians) and requests per GiB:\n\n"
        + rst(["blob MiB", *MODES, "putfile", "GET/GiB", "PUT/GiB"], memory)
    )
    if any(res.samples(default, v) for v in LABELS):
        section.tables.append(_default_table(res, default))
    section.checks = _checks(res, sizes, default, spec.readahead, spec.workers)
    return section


def _default_table(res: Results, default: int) -> str:
    rows = []
    for v, label in LABELS.items():
        samples = res.samples(default, v)
        if not samples:
            continue
        seconds = statistics.median(s.seconds for s in samples)
        methods = sorted({m for s in samples for m in s.counts})
        medians = {m: statistics.median(s.counts.get(m, 0) for s in samples) for m in methods}
        rows.append(
            [
                label,
                f"{seconds:.2f}",
                f"{res.file_size / MIB / seconds:.0f}",
                ", ".join(f"{num(n)} {m}" for m, n in medians.items() if n) or "0",
                f"{sum(medians.values()) / res.blobs(default):.2f}",
                f"{statistics.median(s.rss_growth for s in samples) / MIB:.0f}",
            ]
        )
    return (
        f"At the default blob size ({default / MIB:g} MiB, {res.blobs(default)} blobs):\n\n"
        + rst(["variant", "seconds", "MiB/s", "requests", "per blob", "RSS +MiB"], rows)
    )


def _checks(res: Results, sizes: list[int], default: int, k: int, w: int) -> list[Check]:
    d = f"{default / MIB:g} MiB"
    checks = [
        Check(
            f"default / readahead, copyfileobj ({d})",
            res.ratio(default, "default", "readahead"),
            "<=",
            1.25,
        ),
        Check(
            f"default read() / readahead ({d})",
            res.ratio(default, "default_read", "readahead"),
            "<=",
            1.25,
        ),
        Check(
            f"prefetch / download_fileobj ({d})",
            res.ratio(default, "prefetch", "download_fileobj"),
            "<=",
            0.9,
        ),
        Check(
            f"putfile / upload_fileobj ({d})",
            res.ratio(default, "putfile", "upload_fileobj"),
            "<=",
            1.0,
        ),
    ]
    for size in sizes:
        mib = f"{size / MIB:g} MiB"
        checks.append(
            Check(f"prefetch / raw GET ({mib})", res.ratio(size, "prefetch", "raw_get"), "<=", 1.1)
        )
    for size in sizes:
        mib = f"{size / MIB:g} MiB"
        grown = res.rss_mib(size, "readahead")
        blobs = None if grown is None else grown * MIB / size
        checks.append(Check(f"readahead peak RSS ({mib} blobs)", blobs, "<=", k + 2, " blobs"))
    for size in sizes:
        mib = f"{size / MIB:g} MiB"
        bound = (w * 1.5 + 2) * size / MIB + PUTFILE_FIXED_MIB
        note = f"{w}x1.5+2 blobs + {PUTFILE_FIXED_MIB} MiB"
        checks.append(
            Check(
                f"putfile peak RSS ({mib} blobs)",
                res.rss_mib(size, "putfile"),
                "<=",
                bound,
                " MiB",
                note=note,
            )
        )
    for mode in MODES:
        found = [v for size in sizes if (v := res.per_blob(size, mode, "GET")) is not None]
        worst = max(found, key=lambda v: abs(v - 1)) if found else None
        checks.append(Check(f"GETs per blob, {mode} (worst size)", worst, "==", 1, "", kind=COUNT))
    again = res.value(default, lambda s: s["putfile_again"].counts.get("PUT", 0), "putfile_again")
    ttfb = res.value(
        default,
        lambda s: s["readahead"].extras["ttfb"] / s["readahead"].extras["blob_rtt"],
        "readahead",
    )
    checks += [
        Check(
            f"prefetch / raw GETs into a temp file ({d})",
            res.ratio(default, "prefetch", "raw_get_file"),
            "<=",
            1.1,
            note="diagnostic: same disk work as prefetch",
        ),
        Check(
            f"PUTs per new blob, putfile ({d})",
            res.per_blob(default, "putfile", "PUT"),
            "==",
            1,
            "",
            kind=COUNT,
        ),
        Check(f"PUTs of stored content ({d})", again, "==", 0, "", kind=COUNT),
        Check(f"readahead first byte ({d})", ttfb, "<=", 2, " RTT"),
        Check(f"Sentry-style / prefetch ({d})", res.ratio(default, "sentry", "prefetch"), ">=", 2),
        Check(f"sequential / putfile ({d})", res.ratio(default, "sequential", "putfile"), ">=", 6),
        Check(
            f"lazy / prefetch ({sizes[0] / MIB:g} MiB)",
            res.ratio(sizes[0], "lazy", "prefetch"),
            ">=",
            8,
        ),
    ]
    return checks
