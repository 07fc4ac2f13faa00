"""A blob that is missing, corrupt or unreadable fails the read loudly, in every mode.

The failure is an ``OSError`` subclass from ``chunkfiles.exceptions`` naming
the file, the blob checksum and its offset; the caller never gets zeros,
short data or bytes from beyond the broken blob, and no temp file or worker
thread is left behind. Each case runs on the filesystem and on S3, in the
lazy, prefetch and read-ahead modes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import pickle
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from django.conf import settings
from django.test import override_settings

from chunkfiles.exceptions import (
    BlobCorruptError,
    BlobMissingError,
    BlobReadError,
    ChunkfilesError,
)
from chunkfiles.models import File, FileBlob, FileBlobIndex
from chunkfiles.reader import open_refs
from chunkfiles.refs import BlobRef
from testproject.seaweed import free_port
from testproject.tcpproxy import TcpProxy

from .conftest import MODES

BLOB = 4096
#: Six blobs, the last one short.
SIZE = 5 * BLOB + 500
#: The blob that breaks: in the middle, so good blobs come before and after it.
BROKEN = 2 * BLOB
#: Not a multiple of BLOB, so one read straddles the broken blob's start.
STEP = 1000
#: A file id that cannot appear in a message by accident.
FILE_ID = 918273


pytestmark = pytest.mark.django_db


@pytest.fixture
def data() -> bytes:
    # Random bytes: a run of zeros or a shifted slice would not match by chance.
    return random.Random(7).randbytes(SIZE)


@pytest.fixture
def stored(storage: Any, data: bytes) -> File:
    f = File(id=FILE_ID, name="data.bin", type="test")
    f.putfile(io.BytesIO(data), blob_size=BLOB)
    return f


def blob_at(f: File, offset: int) -> FileBlob:
    return FileBlobIndex.objects.select_related("blob").get(file=f, offset=offset).blob


def chunkfiles_threads() -> list[str]:
    return [
        t.name for t in threading.enumerate() if t.name.startswith("chunkfiles-") and t.is_alive()
    ]


def read_until_error(f: File, mode: str, temp_dir: Path) -> tuple[bytes, BlobReadError]:
    """Read ``f`` in STEP-sized reads; what was returned before the error, and the error."""
    got = bytearray()
    with (
        pytest.raises(BlobReadError) as info,
        f.getfile(**MODES[mode], temp_dir=str(temp_dir)) as fh,
    ):
        while chunk := fh.read(STEP):
            got += chunk
    return bytes(got), info.value


def assert_loud_failure(
    error: BlobReadError,
    f: File,
    data: bytes,
    got: bytes,
    temp_dir: Path,
    mode: str,
    offset: int | None = BROKEN,
) -> None:
    """The error names the blob; only verified bytes before it were returned; nothing leaks."""
    if offset is not None:
        assert error.offset == offset
    assert error.file_id == f.pk
    assert error.checksum == blob_at(f, error.offset).checksum
    message = str(error)
    assert str(FILE_ID) in message
    assert error.checksum in message
    assert str(error.offset) in message
    assert got == data[: len(got)]
    if mode == "prefetch":
        assert got == b""  # getfile() itself failed
    else:
        # Every read wholly before the broken blob succeeded; the one reaching into it failed.
        assert len(got) == STEP * (error.offset // STEP)
    assert os.listdir(temp_dir) == []
    assert chunkfiles_threads() == []


class TestMissingBlob:
    def test_deleted_object(
        self, storage: Any, stored: File, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        storage.remove(blob_at(stored, BROKEN).path)
        got, error = read_until_error(stored, mode, temp_dir)
        assert type(error) is BlobMissingError
        assert isinstance(error, FileNotFoundError)
        assert isinstance(error, OSError)
        assert isinstance(error, ChunkfilesError)
        assert_loud_failure(error, stored, data, got, temp_dir, mode)

    def test_no_storage_name_recorded(
        self, fs_storage: Any, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        f = File(id=FILE_ID, name="data.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        FileBlob.objects.filter(pk=blob_at(f, BROKEN).pk).update(path=None)
        got, error = read_until_error(f, mode, temp_dir)
        assert type(error) is BlobMissingError
        assert_loud_failure(error, f, data, got, temp_dir, mode)


class TestCorruptBlob:
    @pytest.mark.parametrize(
        "damage",
        [
            pytest.param(lambda blob: bytes(len(blob)), id="zeros-same-length"),
            pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
            pytest.param(lambda blob: blob + b"\0" * 10, id="extended"),
        ],
    )
    def test_changed_bytes(
        self, storage: Any, stored: File, data: bytes, mode: str, temp_dir: Path, damage: Any
    ) -> None:
        blob = blob_at(stored, BROKEN)
        damaged = damage(data[BROKEN : BROKEN + BLOB])
        storage.corrupt(blob.path, damaged)
        got, error = read_until_error(stored, mode, temp_dir)
        assert type(error) is BlobCorruptError
        if len(damaged) != BLOB:  # the size check speaks before the hash
            assert str(BLOB) in error.detail
            assert str(len(damaged)) in error.detail
        assert_loud_failure(error, stored, data, got, temp_dir, mode)


#: Fails opens like a dropped connection (see testproject.faults).
FLAKY = "testproject.faults.FlakyFileSystemStorage"


#: No retries, so a refused or reset request fails at once instead of after back-off.
NO_RETRIES = Config(
    s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}
)


@contextlib.contextmanager
def blob_storage_as(backend: str, options: dict[str, Any]) -> Iterator[None]:
    storages = {**settings.STORAGES, "blobs": {"BACKEND": backend, "OPTIONS": options}}
    with override_settings(STORAGES=storages):
        yield


@contextlib.contextmanager
def reads_failing_for(storage: Any, name: str) -> Iterator[None]:
    """Reads of object ``name`` fail mid-file: a raising storage, or a reset S3 connection."""
    if storage.kind == "fs":
        with blob_storage_as(FLAKY, {**storage.options, "fail_names": [name]}):
            yield
        return
    key = f"{storage.location}/{name}"
    with TcpProxy("127.0.0.1", storage.server.port) as proxy:
        proxy.fail_requests(lambda method, target: method == "GET" and key in target)
        options = {
            **storage.options,
            "endpoint_url": proxy.endpoint_url,
            "client_config": NO_RETRIES,
        }
        with blob_storage_as("storages.backends.s3.S3Storage", options):
            yield
        assert any(key in target for method, target in proxy.requests if method == "GET")


class TestStorageFailsMidway:
    def test_storage_error_on_one_blob(
        self, storage: Any, stored: File, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        with reads_failing_for(storage, blob_at(stored, BROKEN).path):
            got, error = read_until_error(stored, mode, temp_dir)
        assert type(error) is BlobReadError
        assert error.__cause__ is not None
        assert_loud_failure(error, stored, data, got, temp_dir, mode)

    def test_filesystem_failing_from_the_nth_call(
        self, fs_storage: Any, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        f = File(id=FILE_ID, name="data.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        options = {**fs_storage.options, "fail_from_call": 3}
        with blob_storage_as(FLAKY, options):
            got, error = read_until_error(f, mode, temp_dir)
        assert type(error) is BlobReadError
        assert isinstance(error.__cause__, ConnectionError)
        if mode == "lazy":  # one blob at a time, in order: the third one fails
            assert error.offset == BROKEN
        assert_loud_failure(error, f, data, got, temp_dir, mode, offset=None)

    def test_s3_connection_cut_mid_body(
        self, s3_storage: Any, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        f = File(id=FILE_ID, name="data.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        assert s3_storage.server is not None
        with TcpProxy("127.0.0.1", s3_storage.server.port) as proxy:
            options = {
                **s3_storage.options,
                "endpoint_url": proxy.endpoint_url,
                "client_config": NO_RETRIES,
            }
            with blob_storage_as("storages.backends.s3.S3Storage", options):
                # Enough for a couple of whole responses, then resets mid-body.
                proxy.fail_after_bytes(2 * BLOB + 1500)
                got, error = read_until_error(f, mode, temp_dir)
        assert isinstance(error, BlobReadError)
        assert_loud_failure(error, f, data, got, temp_dir, mode, offset=None)

    @pytest.mark.parametrize("mode", ["readahead"])
    def test_s3_endpoint_not_listening(
        self, s3_storage: Any, data: bytes, mode: str, temp_dir: Path
    ) -> None:
        f = File(id=FILE_ID, name="data.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        options = {
            **s3_storage.options,
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "client_config": NO_RETRIES,
        }
        with blob_storage_as("storages.backends.s3.S3Storage", options):
            got, error = read_until_error(f, mode, temp_dir)
        assert type(error) is BlobReadError
        assert_loud_failure(error, f, data, got, temp_dir, mode, offset=0)


class TestFailedReadKeepsPosition:
    """A read that raises must not move the position: a retry sees the same bytes.

    Otherwise bytes of blobs read before the failing one are consumed but
    never returned, and a caller that retries after a transient error
    silently gets data from a later offset.
    """

    @pytest.fixture
    def flaky(self) -> tuple[bytes, list[BlobRef], Any]:
        # No newline, so readline(200) from BLOB - 100 has to reach into the second blob.
        data = random.Random(8).randbytes(3 * BLOB).replace(b"\n", b" ")
        refs, objects = [], {}
        for offset in range(0, len(data), BLOB):
            chunk = data[offset : offset + BLOB]
            checksum = hashlib.sha256(chunk).hexdigest()
            refs.append(BlobRef(offset, len(chunk), checksum, checksum))
            objects[checksum] = chunk
        failures = {BLOB: 1}  # the second blob fails once, then reads fine

        def fetch(ref: BlobRef) -> bytes:
            if failures.get(ref.offset):
                failures[ref.offset] -= 1
                raise ConnectionError("transient")
            return objects[ref.path]

        return data, refs, fetch

    @pytest.mark.parametrize("method", ["read", "readline"])
    @pytest.mark.parametrize("mode", ["lazy", "readahead"])
    def test_retried_after_a_transient_error(self, flaky: Any, mode: str, method: str) -> None:
        data, refs, fetch = flaky
        with open_refs(refs, fetch=fetch, **MODES[mode]) as reader:
            read = getattr(reader, method)
            reader.seek(BLOB - 100)
            with pytest.raises(BlobReadError):
                read(200)
            assert reader.tell() == BLOB - 100
            assert read(200) == data[BLOB - 100 : BLOB + 100]


class TestErrorsPickle:
    @pytest.mark.parametrize("cls", [BlobReadError, BlobMissingError, BlobCorruptError])
    def test_round_trip_keeps_type_attributes_and_message(self, cls: type[BlobReadError]) -> None:
        error = cls(file_id=12, checksum="ab" * 32, offset=8192, path="chunkfiles/x", detail="why")
        for copied in [
            *(pickle.loads(pickle.dumps(error, protocol)) for protocol in range(2, 6)),
            copy.copy(error),
            copy.deepcopy(error),
        ]:
            assert type(copied) is cls
            assert isinstance(copied, OSError)
            assert (copied.file_id, copied.checksum, copied.offset, copied.path, copied.detail) == (
                12,
                "ab" * 32,
                8192,
                "chunkfiles/x",
                "why",
            )
            assert str(copied) == str(error)

    def test_error_raised_by_a_read_pickles(
        self, fs_storage: Any, data: bytes, temp_dir: Path
    ) -> None:
        f = File(id=FILE_ID, name="data.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        fs_storage.remove(blob_at(f, BROKEN).path)
        _, error = read_until_error(f, "readahead", temp_dir)
        copied = pickle.loads(pickle.dumps(error))
        assert type(copied) is BlobMissingError
        assert (copied.file_id, copied.checksum, copied.offset, copied.path) == (
            FILE_ID,
            error.checksum,
            BROKEN,
            error.path,
        )
        assert str(copied) == str(error)


class TestInconsistentIndex:
    """Rows that cannot describe the stored bytes fail before anything is fetched."""

    def test_file_size_disagreeing_with_its_blobs(
        self, storage: Any, stored: File, mode: str, temp_dir: Path
    ) -> None:
        File.objects.filter(pk=stored.pk).update(size=stored.size + 1)
        stale = File.objects.get(pk=stored.pk)
        with pytest.raises(BlobCorruptError) as info:
            stale.getfile(**MODES[mode], temp_dir=str(temp_dir))
        assert info.value.file_id == FILE_ID
        assert f"file records {stored.size + 1}" in str(info.value)
        assert list(temp_dir.iterdir()) == []

    def test_gap_between_blobs(self, storage: Any, stored: File, mode: str, temp_dir: Path) -> None:
        moved = blob_at(stored, BROKEN)
        FileBlobIndex.objects.filter(file=stored, offset=BROKEN).update(offset=BROKEN + 1)
        File.objects.filter(pk=stored.pk).update(size=None)
        with pytest.raises(BlobCorruptError) as info:
            File.objects.get(pk=stored.pk).getfile(**MODES[mode], temp_dir=str(temp_dir))
        error = info.value
        assert (error.file_id, error.checksum, error.offset) == (
            FILE_ID,
            moved.checksum,
            BROKEN + 1,
        )
        assert f"index expects this blob at offset {BROKEN}" in str(error)
        assert list(temp_dir.iterdir()) == []
