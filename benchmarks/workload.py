"""What every measured variant shares: draining a reader, warm connections, blob keys.

A variant (``benchmarks.reads``, ``benchmarks.uploads``) does its untimed
preparation here, in a fresh child process: the ``File`` row loaded, clients
created and their connection pools opened by overlapping warm-up GETs, so the
clock measures transfers, not botocore's lazy setup or TCP handshakes.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from .environment import BUCKET, WARMUP_KEY, Spec

Extras = dict[str, float]
Timed = Callable[[], Extras]
Variant = Callable[[Spec], Timed]

#: TransferConfig's default max_concurrency (and botocore's default pool size).
BOTO3_CONCURRENCY = 10


class NullSink:
    """A writable that counts and discards: what ``copyfileobj`` copies into."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def write(self, data: bytes) -> int:
        self.total += len(data)
        return len(data)


def copied(fp: IO[bytes] | Any) -> int:
    """``shutil.copyfileobj(fp, sink)`` (its default 64 KiB reads): what most code writes."""
    sink = NullSink()
    shutil.copyfileobj(fp, sink)
    return sink.total


def check(total: int, spec: Spec) -> None:
    """A read that returned the wrong number of bytes is a failure, not a figure."""
    if total != spec.size:
        raise AssertionError(f"read {total} bytes, expected {spec.size}")


def bench_file(spec: Spec, file_id: int | None = None) -> Any:
    """The ``File`` row of the test file (or ``file_id``)."""
    from chunkfiles.models import File

    return File.objects.get(pk=file_id or spec.file_id)


def warm(get: Callable[[], object], connections: int) -> None:
    """Open ``connections`` pooled connections with overlapping warm-up GETs.

    A long-running server has its pool warm; a fresh child has none, which
    would charge connection setup to the first blobs only.
    """
    barrier = threading.Barrier(connections)

    def one() -> None:
        barrier.wait()  # all in flight at once: each needs its own connection
        get()

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(lambda _: one(), range(connections)))


def warm_store(spec: Spec) -> None:
    """Build chunkfiles' shared S3 client (pool >= every thread count) and warm it."""
    from chunkfiles.storage import blob_store

    connections = max(spec.workers, spec.readahead)
    store = blob_store(connections=connections)
    warm(lambda: store.get(WARMUP_KEY), connections)


def warm_client(client: Any, connections: int = BOTO3_CONCURRENCY) -> Any:
    """``client`` with ``connections`` pooled connections open."""
    warm(lambda: client.get_object(Bucket=BUCKET, Key=WARMUP_KEY)["Body"].read(), connections)
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
