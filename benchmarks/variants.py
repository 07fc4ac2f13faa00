"""Each measured variant as a small function.

A variant does its untimed preparation (loading the ``File`` row, creating
clients, warm-up GETs so connection pools and botocore's lazy setup are
paid for before the clock starts) and returns the closure to be timed. The
closure returns extra measurements, e.g. time to first byte.

Reads consume the whole file in ``blob_size`` reads and discard the bytes;
variants that land the file on disk first (prefetch, Sentry, download_fileobj)
read it back too, so every read variant does the same work for the caller.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from .environment import BUCKET, ONE_OBJECT_KEY, WARMUP_KEY, Spec, s3_client

Extras = dict[str, float]
Timed = Callable[[], Extras]
Variant = Callable[[Spec], Timed]

#: Sentry's ChunkedFileBlobIndexWrapper prefetches with a fixed pool of 4.
SENTRY_WORKERS = 4
#: TransferConfig's default max_concurrency (and botocore's default pool size).
BOTO3_CONCURRENCY = 10
#: Single-blob GETs timed to define one "blob round trip".
RTT_SAMPLES = 8


def _drain(fp: IO[bytes] | Any, read_size: int) -> int:
    total = 0
    while chunk := fp.read(read_size):
        total += len(chunk)
    return total


def _check(total: int, spec: Spec) -> None:
    if total != spec.size:
        raise AssertionError(f"read {total} bytes, expected {spec.size}")


def _bench_file(spec: Spec) -> Any:
    from chunkfiles.models import File

    return File.objects.get(pk=spec.file_id)


def _warm(get: Callable[[], object], connections: int) -> None:
    """Open ``connections`` pooled connections with overlapping warm-up GETs.

    A long-running server has its pool warm; a fresh child has one connection
    at most, which would charge connection setup to the first blobs only.
    """
    barrier = threading.Barrier(connections)

    def one() -> None:
        barrier.wait()  # all in flight at once: each needs its own connection
        get()

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(lambda _: one(), range(connections)))


def _warm_store(spec: Spec) -> None:
    """Build chunkfiles' shared S3 client (pool >= workers) and warm its pool."""
    from chunkfiles.storage import blob_store

    store = blob_store(connections=max(spec.workers, spec.readahead))
    _warm(lambda: store.get(WARMUP_KEY), max(spec.workers, spec.readahead))


def _warm_client(client: Any, connections: int = BOTO3_CONCURRENCY) -> Any:
    _warm(lambda: client.get_object(Bucket=BUCKET, Key=WARMUP_KEY)["Body"].read(), connections)
    return client


def blob_keys(spec: Spec) -> list[str]:
    """S3 keys of the test file's blobs, in file order (django-storages' mapping)."""
    from storages.utils import clean_name

    from chunkfiles.models import FileBlobIndex
    from chunkfiles.storage import blob_storage

    storage: Any = blob_storage()  # an S3Storage; _normalize_name adds its LOCATION
    paths = (
        FileBlobIndex.objects.filter(file_id=spec.file_id)
        .order_by("offset")
        .values_list("blob__path", flat=True)
    )
    return [storage._normalize_name(clean_name(path)) for path in paths]


# -- reads -------------------------------------------------------------------


def _whole_file(spec: Spec, **getfile: Any) -> Timed:
    f = _bench_file(spec)
    _warm_store(spec)

    def run() -> Extras:
        with f.getfile(**getfile) as fp:
            _check(_drain(fp, spec.blob_size), spec)
        return {}

    return run


def lazy(spec: Spec) -> Timed:
    """``getfile()``: each read of one blob's size fetches that blob."""
    return _whole_file(spec)


def prefetch(spec: Spec) -> Timed:
    """``getfile(prefetch=True)``: a pool fills a temp file, then it is read."""
    return _whole_file(spec, prefetch=True, workers=spec.workers)


def readahead(spec: Spec) -> Timed:
    """``getfile(readahead=K)``, with time to first byte and one blob's round trip."""
    f = _bench_file(spec)
    _warm_store(spec)
    client = _warm_client(s3_client(spec), 1)
    keys = blob_keys(spec)[:RTT_SAMPLES]
    samples = []
    for key in keys:  # sequential GETs on a warm connection: one blob round trip each
        start = time.perf_counter()
        client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        samples.append(time.perf_counter() - start)
    client.close()
    blob_rtt = statistics.median(samples)

    def run() -> Extras:
        start = time.perf_counter()
        with f.getfile(readahead=spec.readahead, workers=spec.readahead) as fp:
            first = fp.read(1)
            ttfb = time.perf_counter() - start
            _check(len(first) + _drain(fp, spec.blob_size), spec)
        return {"ttfb": ttfb, "blob_rtt": blob_rtt}

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
            _check(_drain(tmp, spec.blob_size), spec)
        return {}

    return run


def download_fileobj(spec: Spec) -> Timed:
    """boto3's transfer manager (default TransferConfig) on the file stored as ONE object."""
    client = _warm_client(s3_client(spec))

    def run() -> Extras:
        with tempfile.TemporaryFile(dir=spec.temp_dir) as tmp:
            client.download_fileobj(BUCKET, ONE_OBJECT_KEY, tmp)
            tmp.seek(0)
            _check(_drain(tmp, spec.blob_size), spec)
        return {}

    return run


def raw_get(spec: Spec) -> Timed:
    """The ceiling: W threads GET every blob into memory; no hashing, no disk."""
    pool = max(BOTO3_CONCURRENCY, spec.workers)
    client = _warm_client(s3_client(spec, max_pool_connections=pool), spec.workers)
    keys = blob_keys(spec)

    def one(key: str) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def run() -> Extras:
        with ThreadPoolExecutor(spec.workers) as pool:
            _check(sum(pool.map(one, keys)), spec)
        return {}

    return run


# -- uploads -----------------------------------------------------------------


def putfile(spec: Spec) -> Timed:
    """``File.putfile`` of new content (fresh random bytes every run)."""
    from chunkfiles.models import File

    f = File.objects.create(name="upload.bin", type="bench")
    _warm_store(spec)

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            f.putfile(fh, workers=spec.workers)
        return {}

    return run


#: The same bytes again, into another File: every blob deduplicates.
putfile_again = putfile


def sequential(spec: Spec) -> Timed:
    """Sentry-style upload: hash a blob, ``storage.save()`` it, then the next."""
    from django.core.files.base import ContentFile

    from chunkfiles.storage import blob_storage

    storage = blob_storage()
    storage.exists(WARMUP_KEY)
    prefix = f"bench/sequential/{uuid.uuid4().hex}"

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            while data := fh.read(spec.blob_size):
                checksum = hashlib.sha256(data).hexdigest()
                storage.save(f"{prefix}/{checksum}", ContentFile(data))
        return {}

    return run


def upload_fileobj(spec: Spec) -> Timed:
    """boto3's transfer manager (default TransferConfig) uploading ONE object."""
    client = _warm_client(s3_client(spec))

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            client.upload_fileobj(fh, BUCKET, f"bench/upload-{uuid.uuid4().hex}")
        return {}

    return run


VARIANTS: dict[str, Variant] = {
    "lazy": lazy,
    "prefetch": prefetch,
    "readahead": readahead,
    "sentry": sentry,
    "download_fileobj": download_fileobj,
    "raw_get": raw_get,
    "putfile": putfile,
    "putfile_again": putfile_again,
    "sequential": sequential,
    "upload_fileobj": upload_fileobj,
}
