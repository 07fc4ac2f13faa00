"""Reads, uploads and ``close()`` end within bounds the settings control.

A storage that never answers, one that stalls mid-body and one that answers
"100 Continue" and then closes, with or without the blank line that ends the
interim response (``testproject.stallserver``), must each turn
into an ``OSError`` within a bound computed from ``CHUNKFILES`` settings,
in every read mode, without spinning the CPU; ``close()`` and a prefetch
that already has an error must not wait for stalled fetches.

The file under test has its first blob on the real SeaweedFS (alias
``blobs``) and the others on the stall server (alias ``stall``, same bucket
and key prefix), so the stalled fetches run in the read-ahead and prefetch
workers, not only in the caller's thread.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from chunkfiles.chunking import blob_checksum
from chunkfiles.conf import DEFAULTS
from chunkfiles.exceptions import BlobMissingError, BlobReadError, BlobWriteError
from chunkfiles.models import File, FileBlob, FileBlobIndex
from chunkfiles.reader import open_refs
from chunkfiles.refs import BlobRef
from chunkfiles.retry import MAX_BACKOFF
from chunkfiles.storage import blob_store, new_blob_name
from testproject.stallserver import StallServer

from .conftest import MODES, s3_options

pytestmark = pytest.mark.django_db

BLOB = 4096
BLOBS = 4
DATA = random.Random(11).randbytes(BLOB * BLOBS)

#: Small bounds, so every stall ends in seconds.
SMALL: dict[str, Any] = {
    "READ_TIMEOUT": 1,
    "CONNECT_TIMEOUT": 1,
    "ATTEMPTS": 2,
    "DEADLINE": 5,
    "CLOSE_TIMEOUT": 1,
    "BACKOFF": 0.05,
}
#: Scheduling noise on a busy 2-core machine (threads, SeaweedFS, pytest).
SLACK = 1.5


def operation_bound(s: dict[str, Any]) -> float:
    """Longest one blob operation may take: every attempt timing out, plus backoffs.

    An attempt is a connect and a socket read, each with its own timeout; no
    retry starts after ``DEADLINE``, but one started before it runs its course.
    """
    attempt = s["CONNECT_TIMEOUT"] + s["READ_TIMEOUT"]
    backoffs = sum(min(MAX_BACKOFF, s["BACKOFF"] * 2 ** (k - 1)) for k in range(1, s["ATTEMPTS"]))
    return float(min(s["ATTEMPTS"] * attempt + backoffs, s["DEADLINE"] + attempt))


def chunkfiles_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("chunkfiles-") and t.is_alive()]


def join_workers(timeout: float = 30.0) -> None:
    """Wait for abandoned fetches to end (the suite fails tests that leak workers)."""
    end = time.monotonic() + timeout
    for thread in chunkfiles_threads():
        thread.join(max(0.0, end - time.monotonic()))
    assert not chunkfiles_threads()


@contextlib.contextmanager
def stall_alias(
    s3_storage: Any, mode: str, store: str = "blobs", **overrides: Any
) -> Iterator[StallServer]:
    """A ``stall`` storage alias served by a ``StallServer`` in ``mode``, small settings on."""
    with StallServer(mode, body_size=BLOB) as server:
        options = s3_options(s3_storage.server, s3_storage.location, server.endpoint_url)
        storages = {
            **settings.STORAGES,
            "stall": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        }
        chunkfiles = {"STORAGE": store, **SMALL, **overrides}
        try:
            with override_settings(STORAGES=storages, CHUNKFILES=chunkfiles):
                yield server
        finally:
            # Closing the stalled connections ends the abandoned fetches at once.
            server.stop()
            join_workers()


@pytest.fixture
def stored(s3_storage: Any) -> File:
    """A file of BLOBS blobs on SeaweedFS; all but the first then moved to ``stall``."""
    f = File(name="stalled.bin", type="test")
    f.putfile(io.BytesIO(DATA), blob_size=BLOB)
    later = FileBlobIndex.objects.filter(file=f, offset__gt=0).values("blob_id")
    assert FileBlob.objects.filter(pk__in=later).update(storage="stall") == BLOBS - 1
    return f


def timed_read(f: File, mode: str) -> tuple[BaseException, float]:
    """Open ``f`` in ``mode``, read it whole; the error and seconds until it came."""
    start = time.monotonic()
    with pytest.raises(OSError) as info, f.getfile(**MODES[mode]) as fh:
        fh.read()
    return info.value, time.monotonic() - start


class TestReadAgainstStalledStorage:
    @pytest.mark.parametrize("stall", ["silent", "midbody"])
    def test_read_fails_within_the_bound(
        self, s3_storage: Any, stored: File, mode: str, stall: str
    ) -> None:
        with stall_alias(s3_storage, stall) as server:
            error, elapsed = timed_read(stored, mode)
            requests = server.requests
        bound = operation_bound(SMALL) + SLACK
        if mode == "prefetch":  # after the first error, running fetches get CLOSE_TIMEOUT
            bound += SMALL["CLOSE_TIMEOUT"]
        assert type(error) is BlobReadError, repr(error)
        assert error.offset > 0  # the blob on the real server was fine
        assert elapsed < bound, f"{mode}/{stall}: {elapsed:.1f} s, bound {bound:.1f} s"
        # It did wait for the storage (not a fast unrelated failure) and retried.
        assert elapsed >= SMALL["READ_TIMEOUT"] * 0.9
        assert requests >= SMALL["ATTEMPTS"]
        if mode == "lazy":  # one blob at a time: exactly the attempts of one blob
            assert requests == SMALL["ATTEMPTS"]
            assert elapsed >= SMALL["ATTEMPTS"] * SMALL["READ_TIMEOUT"] * 0.9

    @pytest.mark.parametrize("mode", ["readahead"])  # the deadline lives in the store: one mode
    def test_a_trickling_body_is_stopped_by_the_deadline(
        self, s3_storage: Any, stored: File, mode: str
    ) -> None:
        # One byte every 0.2 s: no socket read ever times out; only DEADLINE ends it.
        bound = SMALL["DEADLINE"] + SMALL["READ_TIMEOUT"] + SLACK
        with stall_alias(s3_storage, "trickle") as server:
            # Should the deadline not hold, ending the stream turns a hang into a failure.
            rescue = threading.Timer(bound + 10, server.stop)
            rescue.start()
            try:
                error, elapsed = timed_read(stored, mode)
            finally:
                rescue.cancel()
        assert type(error) is BlobReadError, repr(error)
        assert elapsed < bound, f"{mode}: {elapsed:.1f} s, bound {bound:.1f} s"
        assert elapsed >= SMALL["DEADLINE"] * 0.9  # the trickle itself was not an error

    def test_default_settings_fail_a_read_within_60_seconds(self, s3_storage: Any) -> None:
        """The promise of issue 7 with nothing configured; takes ~45 s, so one mode only."""
        f = File(name="one.bin", type="test")
        f.putfile(io.BytesIO(DATA[:BLOB]), blob_size=BLOB)
        FileBlob.objects.update(storage="stall")
        with stall_alias(s3_storage, "silent") as server:
            with override_settings(CHUNKFILES={"STORAGE": "blobs"}):
                error, elapsed = timed_read(f, "default")
            requests = server.requests
        assert type(error) is BlobReadError
        assert elapsed < 60, f"{elapsed:.1f} s"
        assert elapsed >= DEFAULTS["READ_TIMEOUT"]  # the default timeouts were in force
        assert requests >= 2  # retried, not given up at the first timeout

    def test_save_to_fails_within_the_bound_and_leaves_no_file(
        self, s3_storage: Any, stored: File, tmp_path: Path
    ) -> None:
        target = tmp_path / "out" / "copy.bin"
        with stall_alias(s3_storage, "silent"):
            start = time.monotonic()
            with pytest.raises(BlobReadError):
                stored.save_to(target)
            elapsed = time.monotonic() - start
        bound = operation_bound(SMALL) + SMALL["CLOSE_TIMEOUT"] + SLACK
        assert elapsed < bound, f"{elapsed:.1f} s, bound {bound:.1f} s"
        assert list(target.parent.iterdir()) == []  # no partial file, no temp file


class TestCloseAndPrefetchDoNotWaitForStalls:
    def test_close_of_a_readahead_reader_with_stalled_fetches(
        self, s3_storage: Any, stored: File
    ) -> None:
        # Stalled fetches would take ATTEMPTS x 30 s; close() must not wait for them.
        with stall_alias(s3_storage, "silent", READ_TIMEOUT=30, DEADLINE=120) as server:
            fh = stored.getfile(readahead=3)
            assert fh.read(100) == DATA[:100]  # blob 0, then blobs 1.. go in flight
            for _ in range(100):
                if server.requests >= 2:
                    break
                time.sleep(0.05)
            assert server.requests >= 2, "the read-ahead fetches never reached the server"
            start = time.monotonic()
            fh.close()
            elapsed = time.monotonic() - start
            assert chunkfiles_threads(), "the stalled fetches should still be running"
        assert elapsed < SMALL["CLOSE_TIMEOUT"] + 0.75, f"close() took {elapsed:.1f} s"

    def test_prefetch_raises_a_missing_blob_without_waiting_for_stalled_siblings(self) -> None:
        blobs = [bytes([i]) * 64 for i in range(8)]
        refs = [
            BlobRef(i * 64, 64, blob_checksum(b), new_blob_name(), "", i)
            for i, b in enumerate(blobs)
        ]
        missing = 5
        release = threading.Event()

        def fetch(ref: BlobRef) -> bytes:
            if ref.blob_id == missing:
                raise FileNotFoundError(f"no object {ref.path}")
            release.wait(60)  # a stalled socket
            return blobs[ref.offset // 64]

        start = time.monotonic()
        try:
            with (
                override_settings(CHUNKFILES={"CLOSE_TIMEOUT": 1}),
                pytest.raises(BlobMissingError) as info,
            ):
                open_refs(refs, fetch=fetch, prefetch=True, workers=8)
            elapsed = time.monotonic() - start
        finally:
            release.set()
            join_workers()
        assert info.value.offset == missing * 64
        assert elapsed < 1 + SLACK, f"{elapsed:.1f} s"

    def test_prefetch_with_a_404_and_stalled_siblings_on_real_storage(
        self, s3_storage: Any, stored: File
    ) -> None:
        # Blob 0 stays on SeaweedFS and is deleted there (a real 404); the rest stall.
        first = FileBlobIndex.objects.get(file=stored, offset=0).blob
        s3_storage.remove(first.path)
        with stall_alias(s3_storage, "silent", READ_TIMEOUT=30, DEADLINE=120):
            start = time.monotonic()
            with pytest.raises(BlobMissingError) as info:
                stored.getfile(prefetch=True)
            elapsed = time.monotonic() - start
        assert info.value.offset == 0
        assert elapsed < SMALL["CLOSE_TIMEOUT"] + SLACK, f"{elapsed:.1f} s"


class TestUploadAgainstStalledStorage:
    @pytest.mark.parametrize("stall", ["silent", "continue_close", "continue_cut"])
    def test_putfile_fails_within_the_bound_without_spinning(
        self, s3_storage: Any, stall: str
    ) -> None:
        f = File(name="upload.bin", type="test")
        with stall_alias(s3_storage, stall, store="stall") as server:
            # Build the client first: creating one costs CPU that is not a spin.
            blob_store("stall", connections=16)
            cpu, start = time.process_time(), time.monotonic()
            with pytest.raises(OSError) as info:
                f.putfile(io.BytesIO(DATA[:BLOB]), blob_size=BLOB)
            elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
            requests = server.requests
        # One PUT (its attempts), then the cleanup DELETE of its name (its attempts).
        bound = 2 * operation_bound(SMALL) + SLACK
        assert type(info.value) is BlobWriteError, repr(info.value)
        assert elapsed < bound, f"{stall}: {elapsed:.1f} s, bound {bound:.1f} s"
        assert cpu < 0.25 * elapsed + 0.3, f"{cpu:.2f} s CPU in {elapsed:.1f} s"
        assert requests >= SMALL["ATTEMPTS"]
        assert not FileBlob.objects.exists()
        assert not FileBlobIndex.objects.exists()

    def test_a_put_into_a_slowly_reading_server_is_stopped_by_the_deadline(
        self, s3_storage: Any
    ) -> None:
        # Every socket write makes progress (1 KiB per 0.2 s), so no write
        # times out; 16 MiB would take most of an hour without a deadline.
        f = File(name="big.bin", type="test")
        size = 16 * 1024 * 1024
        bound = SMALL["DEADLINE"] + SMALL["READ_TIMEOUT"] + operation_bound(SMALL) + SLACK
        with stall_alias(s3_storage, "slow_read", store="stall") as server:
            rescue = threading.Timer(bound + 10, server.stop)
            rescue.start()
            try:
                start = time.monotonic()
                with pytest.raises(OSError) as info:
                    f.putfile(io.BytesIO(bytes(size)), blob_size=size)
                elapsed = time.monotonic() - start
            finally:
                rescue.cancel()
        assert type(info.value) is BlobWriteError, repr(info.value)
        assert elapsed < bound, f"{elapsed:.1f} s, bound {bound:.1f} s"

    def test_putfile_of_many_blobs_fails_within_the_bound(self, s3_storage: Any) -> None:
        # Several PUTs run at once, so they fail together; what they leave
        # behind is for orphan collection, not for a cleanup that times out once per name.
        f = File(name="upload.bin", type="test")
        blobs = 6
        with stall_alias(s3_storage, "silent", store="stall"):
            start = time.monotonic()
            with pytest.raises(BlobWriteError):
                f.putfile(io.BytesIO(DATA[: blobs * 512]), blob_size=512)
            elapsed = time.monotonic() - start
        bound = 2 * operation_bound(SMALL) + SLACK
        assert elapsed < bound, f"{blobs} blobs: {elapsed:.1f} s, bound {bound:.1f} s"
