"""The upload path: putfile / from_file / from_files, on the filesystem and S3."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from chunkfiles.exceptions import BlobWriteError, ChecksumMismatchError
from chunkfiles.models import File, FileBlob, FileBlobIndex

pytestmark = pytest.mark.django_db

BLOB = 4096


def stored(data: bytes, blob_size: int = BLOB, name: str = "f.bin") -> File:
    f = File.objects.create(name=name, type="test")
    f.putfile(io.BytesIO(data), blob_size=blob_size)
    return f


def read_back(f: File) -> bytes:
    with f.getfile() as fp:
        return fp.read()


@pytest.mark.parametrize("size", [0, 1, BLOB - 1, BLOB, BLOB + 1, 3 * BLOB + 5])
def test_putfile_round_trips_any_size(storage, size):
    data = os.urandom(size)
    f = stored(data)
    f.refresh_from_db()
    assert f.size == size
    assert f.checksum == hashlib.sha1(data).hexdigest()
    offsets = list(f.fileblobindex_set.order_by("offset").values_list("offset", flat=True))
    assert offsets == list(range(0, size, BLOB))
    assert read_back(f) == data
    assert len(storage.object_names()) == len(offsets)


def test_same_content_twice_is_one_set_of_blobs(storage):
    data = os.urandom(5 * BLOB + 100)
    first, second = stored(data, name="a"), stored(data, name="b")
    assert FileBlob.objects.count() == 6
    assert len(storage.object_names()) == 6
    assert list(first.blobs.order_by("fileblobindex__offset")) == list(
        second.blobs.order_by("fileblobindex__offset")
    )
    assert read_back(first) == read_back(second) == data


def test_repeated_chunks_inside_one_file_are_stored_once(storage):
    data = b"z" * (4 * BLOB)
    f = stored(data)
    assert FileBlob.objects.count() == 1
    assert FileBlobIndex.objects.filter(file=f).count() == 4
    assert storage.object_names() and len(storage.object_names()) == 1
    assert read_back(f) == data


def test_sha1_collision_pairs_are_never_merged(storage, collisions):
    blob_size = 1024 * 1024
    names = ["shattered-1.pdf", "shattered-2.pdf", "sha-mbles-1.bin", "sha-mbles-2.bin"]
    contents = {name: (collisions / name).read_bytes() for name in names}
    files = {name: stored(data, blob_size, name) for name, data in contents.items()}
    for name, f in files.items():
        assert read_back(f) == contents[name], name
    # Sentry's whole-file SHA-1 is kept and does collide; the blobs do not.
    assert files["shattered-1.pdf"].checksum == files["shattered-2.pdf"].checksum
    assert files["sha-mbles-1.bin"].checksum == files["sha-mbles-2.bin"].checksum
    assert set(files["shattered-1.pdf"].blobs.all()) != set(files["shattered-2.pdf"].blobs.all())


def test_colliding_blobs_stay_apart_even_when_claimed_by_sha1(storage, collisions):
    # The SHAttered PDFs already collide in their first 320 bytes: as blobs
    # they share a SHA-1 and must still be two blobs with their own bytes.
    prefixes = [(collisions / f"shattered-{i}.pdf").read_bytes()[:320] for i in (1, 2)]
    mbles = [(collisions / f"sha-mbles-{i}.bin").read_bytes() for i in (1, 2)]
    items = [*prefixes, *mbles]
    assert hashlib.sha1(items[0]).digest() == hashlib.sha1(items[1]).digest()
    assert hashlib.sha1(items[2]).digest() == hashlib.sha1(items[3]).digest()
    blobs = FileBlob.from_files((io.BytesIO(d), hashlib.sha1(d).hexdigest()) for d in items)
    assert len({b.pk for b in blobs}) == 4
    for blob, data in zip(blobs, items, strict=True):
        with blob.getfile() as fp:
            assert fp.read() == data
    again = FileBlob.from_files(io.BytesIO(d) for d in items)
    assert [b.pk for b in again] == [b.pk for b in blobs]


def test_non_seekable_stream_with_short_reads(storage):
    data = os.urandom(10 * BLOB + 123)
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as out:
            for start in range(0, len(data), 1000):  # odd sizes: short reads on the pipe
                out.write(data[start : start + 1000])

    thread = threading.Thread(target=writer)
    thread.start()
    f = File.objects.create(name="pipe", type="test")
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        assert not pipe.seekable()
        f.putfile(pipe, blob_size=BLOB)
    thread.join()
    assert read_back(f) == data
    sizes = list(f.blobs.values_list("size", flat=True))
    assert sorted(sizes) == sorted([BLOB] * 10 + [123])


def test_putfile_replaces_previous_content(storage):
    f = stored(b"old" * 5000)
    f.putfile(io.BytesIO(b"new"), blob_size=BLOB)
    assert read_back(f) == b"new"
    assert FileBlobIndex.objects.filter(file=f).count() == 1


def test_putfile_saves_unsaved_file_in_the_same_transaction(storage):
    f = File(name="unsaved", type="test")
    f.putfile(io.BytesIO(b"abc" * 3000), blob_size=BLOB)
    assert File.objects.get(pk=f.pk).size == 9000


def test_commit_false_leaves_the_row_to_the_caller(storage):
    f = File.objects.create(name="manual", type="test")
    f.putfile(io.BytesIO(b"x" * 100), blob_size=BLOB, commit=False)
    assert f.size == 100
    assert File.objects.get(pk=f.pk).size is None
    f.save()
    assert read_back(File.objects.get(pk=f.pk)) == b"x" * 100
    with pytest.raises(ValueError, match="saved File"):
        File(name="n", type="t").putfile(io.BytesIO(b"x"), commit=False)


def test_from_file_dedupes_by_content(storage):
    first = FileBlob.from_file(io.BytesIO(b"blob bytes"))
    second = FileBlob.from_file(io.BytesIO(b"blob bytes"))
    assert first.pk == second.pk
    assert first.checksum == hashlib.sha256(b"blob bytes").hexdigest()
    assert first.size == 10
    assert len(storage.object_names()) == 1
    with first.getfile() as fp:
        assert fp.read() == b"blob bytes"


def test_from_files_keeps_order_and_accepts_sha256_or_sha1(storage):
    items = [b"one", b"two", b"one", b"three"]
    blobs = FileBlob.from_files(
        [
            io.BytesIO(items[0]),
            (io.BytesIO(items[1]), hashlib.sha256(items[1]).hexdigest()),
            io.BytesIO(items[2]),
            (io.BytesIO(items[3]), hashlib.sha1(items[3]).hexdigest().upper()),
        ]
    )
    assert [b.checksum for b in blobs] == [hashlib.sha256(i).hexdigest() for i in items]
    assert blobs[0].pk == blobs[2].pk
    assert FileBlob.objects.count() == 3
    assert len(storage.object_names()) == 3


def test_from_files_checksum_mismatch_writes_nothing(storage):
    good = [io.BytesIO(os.urandom(100)) for _ in range(5)]
    bad = (io.BytesIO(b"actual"), hashlib.sha256(b"claimed").hexdigest())
    with pytest.raises(ChecksumMismatchError) as info:
        FileBlob.from_files([*good, bad])
    assert info.value.index == 5
    assert hashlib.sha256(b"actual").hexdigest() in str(info.value)
    assert FileBlob.objects.count() == 0
    assert storage.object_names() == []
    with pytest.raises(ValueError, match="neither SHA-256"):
        FileBlob.from_files([(io.BytesIO(b"x"), "abc")])


def flaky_storages(tmp_path: Path, **options: int) -> dict[str, dict[str, object]]:
    return {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "blobs": {
            "BACKEND": "testproject.faults.FlakyFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "flaky"), **options},
        },
    }


def test_one_failed_save_is_retried(tmp_path):
    data = os.urandom(20 * BLOB)
    with override_settings(
        STORAGES=flaky_storages(tmp_path, fail_save_on=7), CHUNKFILES={"STORAGE": "blobs"}
    ):
        f = stored(data)  # save #7 fails once and is tried again
        assert read_back(f) == data
        objects = [p for p in (tmp_path / "flaky").rglob("*") if p.is_file()]
        assert len(objects) == FileBlob.objects.count() == 20


def test_storage_failure_midway_leaves_no_rows_and_no_objects(tmp_path):
    previous = os.urandom(2 * BLOB)
    with override_settings(
        STORAGES=flaky_storages(tmp_path, fail_saves_from=7),
        CHUNKFILES={"STORAGE": "blobs", "BACKOFF": 0.01},
    ):
        f = stored(previous)  # 2 saves
        unsaved = File(name="never", type="test")
        with pytest.raises(BlobWriteError, match="injected") as failure:
            unsaved.putfile(io.BytesIO(os.urandom(20 * BLOB)), blob_size=BLOB)  # fails from save #7
        assert isinstance(failure.value, OSError)
        assert failure.value.path and failure.value.path.startswith("chunkfiles/")
        assert not File.objects.filter(name="never").exists()
        assert FileBlob.objects.count() == 2
        objects = [p for p in (tmp_path / "flaky").rglob("*") if p.is_file()]
        assert len(objects) == 2, "objects written before the failure were not removed"
        assert read_back(f) == previous


def test_putfile_query_count_does_not_grow_with_blob_count(storage):
    def queries_for(count: int) -> int:
        f = File.objects.create(name=f"q{count}", type="test")
        data = b"".join(i.to_bytes(4, "big") * 4 for i in range(count))  # distinct 16-byte blobs
        with CaptureQueriesContext(connections["default"]) as ctx:
            f.putfile(io.BytesIO(data), blob_size=16)
        assert FileBlobIndex.objects.filter(file=f).count() == count
        return len(ctx.captured_queries)

    few, many = queries_for(10), queries_for(400)
    # Only the backend's bulk-insert batching (SQLite: 999 parameters per
    # statement) may add statements; nothing is issued per blob.
    assert many <= few + 4, (few, many)


def test_getfile_of_ten_thousand_blobs_costs_one_query(storage, django_assert_max_num_queries):
    blob = FileBlob.from_file(io.BytesIO(b"k"))
    f = File.objects.create(name="many", type="test", size=10_000)
    FileBlobIndex.objects.bulk_create(
        FileBlobIndex(file=f, blob=blob, offset=i) for i in range(10_000)
    )
    with django_assert_max_num_queries(3), f.getfile(readahead=4) as fp:
        fp.seek(9_990)
        assert fp.read() == b"k" * 10
    assert fp.closed


def test_s3_put_failing_midway_leaves_no_rows_and_no_objects(s3_storage):
    """A PUT reset by the network: nothing of the upload survives on real S3."""
    from botocore.config import Config

    from testproject.tcpproxy import TcpProxy

    assert s3_storage.server is not None
    puts = 0

    def from_seventh_put(method: str, target: str) -> bool:
        # Every PUT from the 7th on is reset, retries included.
        nonlocal puts
        if method == "PUT":
            puts += 1
        return method == "PUT" and puts >= 7

    with TcpProxy("127.0.0.1", s3_storage.server.port) as proxy:
        proxy.fail_requests(from_seventh_put)
        options = {
            **s3_storage.options,
            "endpoint_url": proxy.endpoint_url,
            "client_config": Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}
            ),
        }
        storages = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "blobs": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        }
        with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
            unsaved = File(name="never", type="test")
            with pytest.raises(BlobWriteError, match=r"(?i)connection|reset|closed|endpoint"):
                unsaved.putfile(io.BytesIO(os.urandom(20 * BLOB)), blob_size=BLOB, workers=4)
        assert proxy.counts()["PUT"] >= 7
        assert puts >= 7
    assert not File.objects.filter(name="never").exists()
    assert FileBlob.objects.count() == 0
    assert s3_storage.object_names() == [], "objects written before the failure were left"
