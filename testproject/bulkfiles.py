"""Many small files over few shared blobs, created in bulk (Celery tests and benchmark).

Storing thousands of files one ``putfile`` at a time would take longer than
the job they are made for; here ``distinct`` blobs are stored once and each
file's two index rows point at two of them, so every file is a real,
readable, checksummed two-blob file and the rows go in with a few bulk inserts.
"""

from __future__ import annotations

import hashlib
import io
import os

from chunkfiles.models import File, FileBlob, FileBlobIndex

DISTINCT = 300
BLOB = 1024


def bulk_files(count: int, distinct: int = DISTINCT, type: str = "bulk") -> dict[int, bytes]:
    """``count`` files of two blobs each, drawn from ``distinct`` stored blobs; id -> bytes."""
    datas = [os.urandom(BLOB) for _ in range(distinct)]
    blobs = FileBlob.from_files([io.BytesIO(d) for d in datas])
    picks = [(i % distinct, (7 * i + 3) % distinct) for i in range(count)]
    files = File.objects.bulk_create(
        File(
            name=f"dir/{i:05}.bin",
            type=type,
            size=2 * BLOB,
            checksum=hashlib.sha1(datas[a] + datas[b]).hexdigest(),
        )
        for i, (a, b) in enumerate(picks)
    )
    FileBlobIndex.objects.bulk_create(
        FileBlobIndex(file=f, blob=blobs[ab[k]], offset=k * BLOB)
        for f, ab in zip(files, picks, strict=True)
        for k in (0, 1)
    )
    return {f.pk: datas[a] + datas[b] for f, (a, b) in zip(files, picks, strict=True)}
