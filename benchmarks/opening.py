"""Opening a file of 10,000 blobs, and random access in the default mode (issue 11).

Opening must cost at most two queries and no storage request before the
first read, in every streaming mode. A header, the tail (where zipfile
looks first) and a few scattered blobs, read in the default mode, must fetch
exactly the blobs they touch: the adaptive read-ahead may not guess ahead
on reads that are not sequential.
"""

from __future__ import annotations

from .harness import Bench
from .report import COUNT, Check, Section, num

INDEX_BLOBS = 10_000
#: Small blobs: one object serves every row, so the size only sets the offsets.
INDEX_BLOB_SIZE = 4096


def run(bench: Bench) -> Section:
    blobs = INDEX_BLOBS
    spec = bench.index_file(blobs, INDEX_BLOB_SIZE)
    label = f"{blobs} blobs"
    opened = bench.measure(spec, "open_index", label)
    scattered = bench.measure(spec, "random_reads", label)
    section = Section(f"Opening a file of {blobs:,} blobs; random access in the default mode")
    requests = None if opened is None else sum(opened.counts.values())
    queries = None if opened is None else opened.extras["queries"]
    touched = None if scattered is None else scattered.extras["blobs_touched"]
    gets = None if scattered is None else scattered.reads()
    note = "" if opened is None else f"slowest open {num(opened.extras['open_ms'])} ms"
    section.checks = [
        Check("queries per open (default, readahead, lazy)", queries, "<=", 2, "", kind=COUNT),
        Check("storage requests before the first read", requests, "==", 0, "", COUNT, note),
        Check(
            "GETs of scattered reads / blobs touched",
            None if gets is None or not touched else gets / touched,
            "==",
            1,
            "",
            kind=COUNT,
            note=f"{gets} GETs for {touched} blobs" if touched else "",
        ),
    ]
    return section
