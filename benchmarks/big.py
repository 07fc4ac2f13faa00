"""Peak memory of reading a big file (``--big``; not in the default run: slow).

Prefetch writes a temp file with ``pwrite`` and streaming modes hold a
window of blobs, so neither may grow with the file: a 4 GiB file must read
in well under 150 MiB of peak RSS growth, and read-ahead within K+2 blobs.
"""

from __future__ import annotations

from .environment import MIB
from .harness import Bench
from .report import Check, Section

BIG_MIB = 4096
PREFETCH_BOUND_MIB = 150


def run(bench: Bench) -> Section:
    blob = bench.args.default_blob_size
    spec = bench.stored_file(blob, BIG_MIB * MIB)
    label = f"{BIG_MIB} MiB"
    prefetched = bench.measure(spec, "prefetch", label)
    streamed = bench.measure(spec, "readahead", label)
    k = spec.readahead
    return Section(
        f"Reading {BIG_MIB} MiB in {spec.blobs} blobs of {blob / MIB:g} MiB",
        checks=[
            Check(
                "prefetch peak RSS",
                None if prefetched is None else prefetched.rss_growth / MIB,
                "<",
                PREFETCH_BOUND_MIB,
                " MiB",
                note="" if prefetched is None else f"{prefetched.seconds:.1f} s",
            ),
            Check(
                "readahead peak RSS",
                None if streamed is None else streamed.rss_growth / blob,
                "<=",
                k + 2,
                " blobs",
                note="" if streamed is None else f"{streamed.seconds:.1f} s",
            ),
        ],
    )
