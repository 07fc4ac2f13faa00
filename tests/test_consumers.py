"""Real consumers of file objects read stored files correctly in every mode.

Each archive or image is stored in 4 KiB blobs, so members and headers
straddle blob boundaries and the consumers' seeks land inside blobs. Every
test runs on the filesystem and on S3, lazily, prefetched and with read-ahead.
"""

from __future__ import annotations

import gzip
import io
import random
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import File as DjangoFile
from django.http import FileResponse
from PIL import Image

from chunkfiles.models import File

from .conftest import MODES

BLOB_SIZE = 4096


pytestmark = pytest.mark.django_db


def store(data: bytes, name: str) -> File:
    f = File(name=name, type="test")
    f.putfile(io.BytesIO(data), blob_size=BLOB_SIZE)
    assert f.size == len(data)
    return f


def open_stored(f: File, mode: str, temp_dir: Path) -> DjangoFile:
    return f.getfile(**MODES[mode], temp_dir=str(temp_dir))


def members() -> dict[str, bytes]:
    """Compressible and incompressible members of a few blobs each, and an empty one."""
    rng = random.Random(1)
    return {
        "notes.txt": b"".join(b"line %d of the notes\n" % i for i in range(900)),
        "noise.bin": rng.randbytes(3 * BLOB_SIZE + 17),
        "dir/empty": b"",
        "dir/small.bin": rng.randbytes(100),
        "dir/edge.bin": rng.randbytes(BLOB_SIZE),
    }


def test_zipfile_reads_every_member(storage: Any, mode: str, temp_dir: Path) -> None:
    content = members()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (name, data) in enumerate(content.items()):
            method = zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    f = store(buffer.getvalue(), "archive.zip")
    assert f.size is not None and f.size > 4 * BLOB_SIZE
    with open_stored(f, mode, temp_dir) as fh, zipfile.ZipFile(fh) as archive:
        assert archive.testzip() is None  # every member's CRC checks out
        assert archive.namelist() == list(content)
        # Out of order, so the reader seeks back and forth.
        for name in reversed(content):
            assert archive.read(name) == content[name]
        with archive.open("noise.bin") as member:
            member.seek(BLOB_SIZE - 3)
            assert member.read(10) == content["noise.bin"][BLOB_SIZE - 3 : BLOB_SIZE + 7]


def test_tarfile_reads_every_member(storage: Any, mode: str, temp_dir: Path) -> None:
    check_tarfile(mode, temp_dir, compression="")


def test_tarfile_reads_a_compressed_tar(fs_storage: Any, mode: str, temp_dir: Path) -> None:
    check_tarfile(mode, temp_dir, compression="gz")


def check_tarfile(mode: str, temp_dir: Path, compression: str) -> None:
    content = members()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        for name, data in content.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    f = store(buffer.getvalue(), f"archive.tar{'.' + compression if compression else ''}")
    with open_stored(f, mode, temp_dir) as fh, tarfile.open(fileobj=fh) as archive:
        assert archive.getnames() == list(content)
        for name in reversed(content):
            member = archive.extractfile(name)
            assert member is not None
            assert member.read() == content[name]


def test_gzipfile_decompresses_every_member(storage: Any, mode: str, temp_dir: Path) -> None:
    first = members()["notes.txt"] * 3
    second = random.Random(2).randbytes(2 * BLOB_SIZE)
    # Two gzip members back to back, as `cat a.gz b.gz` makes.
    f = store(gzip.compress(first) + gzip.compress(second, compresslevel=1), "data.gz")
    with open_stored(f, mode, temp_dir) as fh, gzip.GzipFile(fileobj=fh) as unzipped:
        assert unzipped.read(100) == first[:100]
        unzipped.seek(len(first) - 5)  # gzip seeks forward by reading on
        assert unzipped.read() == first[-5:] + second


def test_copyfileobj_copies_everything(
    storage: Any, mode: str, temp_dir: Path, tmp_path: Path
) -> None:
    data = random.Random(3).randbytes(5 * BLOB_SIZE + 1234)
    f = store(data, "data.bin")
    target = tmp_path / "copy.bin"
    with open_stored(f, mode, temp_dir) as fh, target.open("wb") as out:
        shutil.copyfileobj(fh, out, length=1000)
    assert target.read_bytes() == data
    with open_stored(f, mode, temp_dir) as fh:
        fh.seek(BLOB_SIZE + 1)
        copy = io.BytesIO()
        shutil.copyfileobj(fh, copy)
    assert copy.getvalue() == data[BLOB_SIZE + 1 :]


def test_fileresponse_streams_the_file(storage: Any, mode: str, temp_dir: Path) -> None:
    data = random.Random(4).randbytes(6 * BLOB_SIZE + 99)
    f = store(data, "report.pdf")
    fh = open_stored(f, mode, temp_dir)
    response = FileResponse(fh, as_attachment=True)
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="report.pdf"'
    streamed = b"".join(response.streaming_content)
    assert streamed == data
    assert not fh.closed
    response.close()
    assert fh.closed
    assert fh.file.closed
    assert list(temp_dir.iterdir()) == []


def test_fileresponse_closes_the_reader_when_not_consumed(
    fs_storage: Any, mode: str, temp_dir: Path
) -> None:
    f = store(random.Random(5).randbytes(3 * BLOB_SIZE), "data.bin")
    fh = open_stored(f, mode, temp_dir)
    response = FileResponse(fh)
    assert next(iter(response.streaming_content))
    response.close()  # a client that went away after the first block
    assert fh.file.closed
    assert list(temp_dir.iterdir()) == []


def test_pillow_opens_a_stored_png(storage: Any, mode: str, temp_dir: Path) -> None:
    rng = random.Random(6)
    original = Image.frombytes("RGB", (80, 60), rng.randbytes(80 * 60 * 3))
    buffer = io.BytesIO()
    original.save(buffer, format="PNG")
    f = store(buffer.getvalue(), "noise.png")
    assert f.size is not None and f.size > 3 * BLOB_SIZE
    with open_stored(f, mode, temp_dir) as fh, Image.open(fh) as image:
        assert image.format == "PNG"
        assert image.size == (80, 60)
        image.load()
        assert image.tobytes() == original.tobytes()
