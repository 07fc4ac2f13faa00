"""Reads through a link that cuts about one GET body in ten mid-stream (issues 7 and 11).

Every mode must still return exact bytes (the reader verifies SHA-256, so a
wrong byte would fail the child), and each cut body should cost exactly one
more GET: a retry of that blob, not a restart of the file. The proxy
(``benchmarks.faultproxy``) decides with a seeded coin per request, so a
run's cuts are reproducible given the same request order.
"""

from __future__ import annotations

from typing import Any

from .environment import MIB, WARMUP_KEY
from .harness import Bench, Sample, log
from .report import CORRECTNESS, Check, Section, num, rst
from .sweep import MODES

CUT_RATE = 0.10
#: Response bytes let through before the cut, at least: past the headers, into the body.
MIN_CUT_BYTES = 1024


def _blob_get(method: str, target: str) -> bool:
    return method == "GET" and WARMUP_KEY not in target


def run(bench: Bench) -> Section:
    size = int(min(bench.args.blob_sizes) * MIB)  # the most blobs, so the most cuts
    spec = bench.stored_file(size)
    blobs = spec.blobs
    results: dict[str, list[Sample | None]] = {mode: [] for mode in MODES}
    for r in range(bench.args.runs):
        log(f"cut-body run {r + 1}/{bench.args.runs}")
        for mode in MODES:
            seed = 1 + 1000 * r + MODES.index(mode)  # seed 0 cuts none of the first 32

            def cut(proxy: Any, seed: int = seed) -> None:
                proxy.cut_bodies(
                    CUT_RATE, _blob_get, seed=seed, min_bytes=MIN_CUT_BYTES, max_bytes=size // 2
                )

            results[mode].append(bench.measure(spec, f"{mode}_under_faults", "10% cut", cut))
    rows, extra_per_cut = [], []
    reads = finished = succeeded = 0
    for mode, samples in results.items():
        # A crashed child is wrong bytes (check() raised) or a bug, never a fault
        # a reader may report: it gives exact bytes or an OSError.
        ended = [s for s in samples if s is not None]
        done = [s for s in ended if not s.extras.get("read_errors")]
        reads, finished, succeeded = (
            reads + len(samples),
            finished + len(ended),
            succeeded + len(done),
        )
        cuts = sum(int(s.extras.get("cuts", 0)) for s in done)
        gets = sum(s.counts.get("GET", 0) for s in done)
        extra = gets - blobs * len(done)
        if cuts:
            extra_per_cut.append(extra / cuts)
        rows.append(
            [
                mode,
                f"{len(done)}/{len(samples)}",
                str(blobs * len(done)),
                str(cuts),
                str(gets),
                f"{gets / (blobs * len(done)):.3f}" if done else "-",
                f"{extra / cuts:.2f}" if cuts else "-",
            ]
        )
    section = Section(
        f"Reads with {CUT_RATE:.0%} of GET bodies cut mid-stream "
        f"({spec.size / MIB:g} MiB in {blobs} blobs of {size / MIB:g} MiB)"
    )
    section.tables.append(
        rst(
            ["mode", "succeeded", "blobs read", "bodies cut", "GETs", "GETs/blob", "extra/cut"],
            rows,
        )
    )
    section.checks = [
        Check(
            "reads with no wrong byte (exact bytes or an OSError)",
            finished / reads if reads else None,
            "==",
            1,
            "",
            kind=CORRECTNESS,
            note=f"{finished} of {reads}",
        ),
        Check(
            "reads that succeed despite the cuts",
            succeeded / reads if reads else None,
            ">=",
            0.99,
            "",
            note=f"{succeeded} of {reads}",
        ),
        Check(
            "extra GETs per cut body (worst mode)",
            max(extra_per_cut, key=lambda v: abs(v - 1)) if extra_per_cut else None,
            "==",
            1,
            "",
            note="" if extra_per_cut else "no body was cut: too few blobs",
        ),
    ]
    if extra_per_cut:
        section.notes.append(
            f"extra GETs per cut, by mode: {', '.join(num(v) for v in extra_per_cut)}"
        )
    return section
