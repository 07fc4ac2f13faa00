"""Concurrent uploads of the same content (PostgreSQL and MariaDB only).

Threads use their own database connections and really overlap: a barrier
releases them together. The unique checksum must leave exactly one row per
blob, every file must read back, and the losers' objects must be deleted.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from chunkfiles.models import File, FileBlob

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]
THREADS = 6


def run_together(target: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def test_same_file_uploaded_concurrently(storage):
    data = os.urandom(40 * 4096)

    def upload(i: int) -> int:
        f = File.objects.create(name=f"racer-{i}", type="t")
        f.putfile(io.BytesIO(data), blob_size=4096, workers=4)
        return int(f.pk)

    pks = run_together(upload)
    assert FileBlob.objects.count() == 40
    assert len(storage.object_names()) == 40, "objects of losing uploads were left behind"
    for pk in pks:
        with File.objects.get(pk=pk).getfile(prefetch=True) as fp:
            assert fp.read() == data


def test_from_files_concurrently(storage):
    items = [os.urandom(1000) for _ in range(30)]

    def upload(i: int) -> list[int]:
        # Each thread starts at a different item so inserts interleave.
        order = items[i:] + items[:i]
        blobs = FileBlob.from_files(io.BytesIO(d) for d in order)
        by_content = dict(zip(order, blobs, strict=True))
        return [int(by_content[d].pk) for d in items]

    results = run_together(upload)
    assert all(r == results[0] for r in results), "threads got different rows for one blob"
    assert FileBlob.objects.count() == 30
    assert len(storage.object_names()) == 30


def test_overlapping_uploads_in_different_orders_never_fail(storage):
    """16 threads x 12 rounds storing overlapping blobs in different orders.

    Before blob rows were locked and inserted in checksum order, about one
    round in ten ended with a deadlock error reaching callers.
    """
    import random

    blob = 4096
    pool = [os.urandom(blob) for _ in range(48)]
    threads, rounds = 16, 12
    errors: list[BaseException] = []
    results: dict[int, bytes] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        rng = random.Random(t)
        try:
            for r in range(rounds):
                chosen = rng.sample(pool, 12)  # overlapping, in a different order each time
                data = b"".join(chosen)
                f = File.objects.create(name=f"o-{t}-{r}", type="t")
                f.putfile(io.BytesIO(data), blob_size=blob, workers=2)
                with lock:
                    results[int(f.pk)] = data
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in workers), "uploads hung"
    assert not errors, errors[:3]
    assert len(results) == threads * rounds
    stored_blobs = FileBlob.objects.count()
    assert stored_blobs <= len(pool)
    assert len(storage.object_names()) == stored_blobs, "losers' objects left behind"
    for pk, data in results.items():
        with File.objects.get(pk=pk).getfile(readahead=False) as fp:
            assert fp.read() == data
