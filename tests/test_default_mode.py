"""The default read mode: page-cache-like read-ahead.

Random access fetches only the blobs it touches; sequential reads and a
whole-file ``read()`` fetch concurrently.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import zipfile

import pytest

from chunkfiles.models import File
from chunkfiles.reader import open_refs
from chunkfiles.refs import BlobRef

pytestmark = pytest.mark.django_db
BLOB = 4096


class Recording:
    """Fetches through the real storage and records which blobs were fetched."""

    def __init__(self, delay: float = 0.0) -> None:
        from chunkfiles.fetch import storage_fetch

        self.inner = storage_fetch(8)
        self.delay = delay
        self.offsets: list[int] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, ref: BlobRef) -> bytes:
        with self._lock:
            self.offsets.append(ref.offset)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            return self.inner(ref)
        finally:
            with self._lock:
                self.active -= 1


def blobs_covering(start: int, end: int) -> set[int]:
    return {b * BLOB for b in range(start // BLOB, (end - 1) // BLOB + 1)}


def stored(data: bytes) -> File:
    f = File.objects.create(name="z", type="t")
    f.putfile(io.BytesIO(data), blob_size=BLOB)
    return f


def test_a_zip_member_fetches_only_the_blobs_it_touches(storage):
    members = {f"m{i}.bin": os.urandom(3 * BLOB + 100 * i) for i in range(8)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    f = stored(data)
    fetch = Recording()
    with open_refs(f.blob_refs(), fetch=fetch) as reader, zipfile.ZipFile(reader) as archive:
        info = archive.getinfo("m5.bin")
        assert archive.read("m5.bin") == members["m5.bin"]
    # The central directory at the end, the member's header and its data: nothing else.
    directory_start = data.index(b"PK\x01\x02")
    allowed = blobs_covering(directory_start, len(data))
    member_end = info.header_offset + 30 + len("m5.bin") + info.file_size
    allowed |= blobs_covering(info.header_offset, member_end)
    fetched = set(fetch.offsets)
    assert fetched <= allowed, sorted(fetched - allowed)
    assert len(fetch.offsets) == len(fetched), "a blob was fetched twice"
    assert len(fetched) < len(f.blob_refs()) / 2


def test_reading_a_header_fetches_one_blob(storage):
    f = stored(os.urandom(20 * BLOB))
    fetch = Recording()
    with open_refs(f.blob_refs(), fetch=fetch) as reader:
        assert len(reader.read(16)) == 16
        reader.seek(10 * BLOB + 5)
        assert len(reader.read(100)) == 100
    assert sorted(fetch.offsets) == [0, 10 * BLOB], "a read fetched a blob it did not touch"


def test_sequential_copy_and_whole_read_fetch_concurrently(storage):
    data = os.urandom(32 * BLOB)
    f = stored(data)
    fetch = Recording(delay=0.02)
    out = io.BytesIO()
    with open_refs(f.blob_refs(), fetch=fetch) as reader:
        shutil.copyfileobj(reader, out, 1000)  # small sequential reads
    assert out.getvalue() == data
    assert fetch.max_active >= 4, "the window did not grow on sequential reads"
    assert sorted(fetch.offsets) == [i * BLOB for i in range(32)]

    fetch = Recording(delay=0.02)
    with open_refs(f.blob_refs(), fetch=fetch) as reader:
        reader.seek(3 * BLOB + 1)
        assert reader.read() == data[3 * BLOB + 1 :]
    assert fetch.max_active >= 4, "a whole-file read() fetched one blob at a time"
    assert sorted(fetch.offsets) == [i * BLOB for i in range(3, 32)]


def test_the_window_never_holds_more_than_readahead_blobs_ahead(storage, settings):
    settings.CHUNKFILES = {**settings.CHUNKFILES, "READAHEAD": 3}
    f = stored(os.urandom(40 * BLOB))
    fetch = Recording(delay=0.01)
    with open_refs(f.blob_refs(), fetch=fetch) as reader:
        for i in range(40):
            assert len(reader.read(BLOB)) == BLOB
            assert max(fetch.offsets) // BLOB <= i + 3
    assert fetch.max_active <= 3
