"""The read variants, each ``spec -> timed closure`` (see ``benchmarks.workload``).

chunkfiles' modes are read front to back with ``shutil.copyfileobj`` (64 KiB
reads), the way most code reads a file; variants that land the file on disk
first (prefetch, Sentry, ``download_fileobj``) read it back the same way, so
every read variant does the same work for the caller. Settings are the
benchmark's (``CHUNKFILES`` from the ``Spec``): no variant passes a depth or
a worker count, so what is measured is what a user gets from the settings.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .environment import BUCKET, ONE_OBJECT_KEY, WARMUP_KEY, Spec, s3_client
from .workload import (
    BOTO3_CONCURRENCY,
    Extras,
    Timed,
    Variant,
    bench_file,
    blob_keys,
    check,
    copied,
    warm_client,
    warm_store,
)

#: Sentry's ChunkedFileBlobIndexWrapper prefetches with a fixed pool of 4.
SENTRY_WORKERS = 4
#: Single-blob GETs timed to define one "blob round trip".
RTT_SAMPLES = 8
#: Blobs the random-access variant touches (besides the first and the last).
RANDOM_READS = 6


def _copy(spec: Spec, **getfile: Any) -> Timed:
    f = bench_file(spec)
    warm_store(spec)

    def run() -> Extras:
        start = time.perf_counter()
        with f.getfile(**getfile) as fp:
            first = fp.read(1)
            ttfb = time.perf_counter() - start
            check(len(first) + copied(fp), spec)
        return {"ttfb": ttfb}

    return run


def lazy(spec: Spec) -> Timed:
    """``getfile(readahead=False)``: one blob at a time, fetched when the position enters it."""
    return _copy(spec, readahead=False)


def default(spec: Spec) -> Timed:
    """``getfile()``: the adaptive default, copied front to back."""
    return _copy(spec)


def readahead(spec: Spec) -> Timed:
    """``getfile(readahead=True)``: K blobs in flight from the first read; and one blob's RTT."""
    timed = _copy(spec, readahead=True)
    client = warm_client(s3_client(spec), 1)
    samples = []
    for key in blob_keys(spec)[:RTT_SAMPLES]:  # sequential GETs on a warm connection
        start = time.perf_counter()
        client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        samples.append(time.perf_counter() - start)
    client.close()
    blob_rtt = statistics.median(samples)

    def run() -> Extras:
        return {**timed(), "blob_rtt": blob_rtt}

    return run


def prefetch(spec: Spec) -> Timed:
    """``getfile(prefetch=True)``: a pool fills a temp file, then it is read."""
    return _copy(spec, prefetch=True)


def default_read(spec: Spec) -> Timed:
    """``getfile().read()``: the whole file as one ``bytes``."""
    f = bench_file(spec)
    warm_store(spec)

    def run() -> Extras:
        with f.getfile() as fp:
            check(len(fp.read()), spec)
        return {}

    return run


def sentry(spec: Spec) -> Timed:
    """What Sentry does: a pool of 4, ``storage.open(path).read()`` per blob,
    written at its offset into a preallocated temp file; no checksum."""
    from chunkfiles.models import FileBlobIndex
    from chunkfiles.storage import blob_storage

    storage = blob_storage()
    with storage.open(WARMUP_KEY) as warm:  # the main thread's connection only
        warm.read()

    def run() -> Extras:
        rows = list(
            FileBlobIndex.objects.filter(file_id=spec.file_id)
            .order_by("offset")
            .values_list("offset", "blob__path")
        )
        with tempfile.TemporaryFile(dir=spec.temp_dir) as tmp:
            fd = tmp.fileno()
            os.ftruncate(fd, spec.size)

            def one(row: tuple[int, str]) -> None:
                with storage.open(row[1]) as fh:
                    os.pwrite(fd, fh.read(), row[0])

            with ThreadPoolExecutor(SENTRY_WORKERS) as pool:
                list(pool.map(one, rows))
            check(copied(tmp), spec)
        return {}

    return run


def download_fileobj(spec: Spec) -> Timed:
    """boto3's transfer manager (default TransferConfig) on the file stored as ONE object."""
    client = warm_client(s3_client(spec))

    def run() -> Extras:
        with tempfile.TemporaryFile(dir=spec.temp_dir) as tmp:
            client.download_fileobj(BUCKET, ONE_OBJECT_KEY, tmp)
            tmp.seek(0)
            check(copied(tmp), spec)
        return {}

    return run


def raw_get(spec: Spec) -> Timed:
    """The ceiling: W threads GET every blob into memory; no hashing, no disk."""
    pool = max(BOTO3_CONCURRENCY, spec.workers)
    client = warm_client(s3_client(spec, max_pool_connections=pool), spec.workers)
    keys = blob_keys(spec)

    def one(key: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def run() -> Extras:
        with ThreadPoolExecutor(spec.workers) as pool:
            check(sum(pool.map(one, keys)), spec)
        return {}

    return run


def raw_get_file(spec: Spec) -> Timed:
    """The ceiling with prefetch's disk work: W threads GET every blob, ``pwrite`` it
    into a temp file, which is then read back; no hashing. Splits prefetch's gap to
    ``raw_get`` into the temp file's cost and chunkfiles' own."""
    pool = max(BOTO3_CONCURRENCY, spec.workers)
    client = warm_client(s3_client(spec, max_pool_connections=pool), spec.workers)
    keys = blob_keys(spec)

    def run() -> Extras:
        with tempfile.TemporaryFile(dir=spec.temp_dir) as tmp:
            fd = tmp.fileno()

            def one(item: tuple[int, str]) -> None:
                data = client.get_object(Bucket=BUCKET, Key=item[1])["Body"].read()
                os.pwrite(fd, data, item[0] * spec.blob_size)

            with ThreadPoolExecutor(spec.workers) as pool:
                list(pool.map(one, enumerate(keys)))
            check(copied(tmp), spec)
        return {}

    return run


# -- the many-blob file: what opening costs, what random access fetches ---------------


def open_index(spec: Spec) -> Timed:
    """Open (and close) the many-blob file in each streaming mode: queries, milliseconds."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    f = bench_file(spec, spec.index_file_id)
    warm_store(spec)

    def run() -> Extras:
        queries, seconds = [], []
        for options in ({}, {"readahead": True}, {"readahead": False}):
            start = time.perf_counter()
            with CaptureQueriesContext(connection) as captured:
                fp = f.getfile(**options)
            seconds.append(time.perf_counter() - start)
            queries.append(len(captured))
            fp.close()
        return {"queries": max(queries), "open_ms": max(seconds) * 1000, "opens": len(queries)}

    return run


def random_reads(spec: Spec) -> Timed:
    """A header, the tail (as zipfile reads it) and a few scattered blobs, default mode.

    Reports how many distinct blobs the reads touched: the GETs the proxy
    counts should be exactly that many.
    """
    f = bench_file(spec, spec.index_file_id)
    warm_store(spec)
    refs = f.blob_refs()
    picks = random.Random(11).sample(range(2, len(refs) - 2, 3), RANDOM_READS)
    # Header first, then the tail, then scattered blobs: never two neighbours in order.
    reads = [(0, 512), (f.size - 22, 22), *((refs[i].offset + 7, 100) for i in picks)]
    touched = {0, len(refs) - 1, *picks}

    def run() -> Extras:
        with f.getfile() as fp:
            for offset, size in reads:
                fp.seek(offset)
                if len(fp.read(size)) != size:
                    raise AssertionError(f"short read at {offset}")
        return {"blobs_touched": len(touched)}

    return run


def _tolerant(variant: Variant) -> Variant:
    """``variant`` where an ``OSError`` is a result (``read_errors``), not a crash.

    For fault runs: a read that gives up after its retries is an outcome to
    count; wrong bytes (``check``'s ``AssertionError``) still fail the child.
    """

    def prepare(spec: Spec) -> Timed:
        timed = variant(spec)

        def run() -> Extras:
            try:
                return {**timed(), "read_errors": 0}
            except OSError as exc:
                print(f"read failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return {"read_errors": 1}

        return run

    return prepare


VARIANTS: dict[str, Variant] = {
    "lazy": lazy,
    "default": default,
    "readahead": readahead,
    "prefetch": prefetch,
    "default_read": default_read,
    "sentry": sentry,
    "download_fileobj": download_fileobj,
    "raw_get": raw_get,
    "raw_get_file": raw_get_file,
    "open_index": open_index,
    "random_reads": random_reads,
}
#: The streaming and prefetch modes as fault runs measure them.
VARIANTS.update(
    {
        f"{m}_under_faults": _tolerant(VARIANTS[m])
        for m in ("lazy", "default", "readahead", "prefetch")
    }
)
