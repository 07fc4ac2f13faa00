"""The small traps of issue 7, one test each: clear errors, no silent wrong answers."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from chunkfiles.exceptions import FileNotStoredError
from chunkfiles.models import File, FileBlob

from .conftest import MODES

pytestmark = pytest.mark.django_db
BLOB = 64 * 1024


def test_file_never_stored_raises_a_clear_oserror(storage, mode, tmp_path: Path):
    f = File.objects.create(name="empty-row.bin", type="t")
    with pytest.raises(FileNotStoredError) as info:
        f.getfile(**MODES[mode])
    assert isinstance(info.value, OSError)
    assert f"file {f.pk}" in str(info.value) and "empty-row.bin" in str(info.value)
    with pytest.raises(FileNotStoredError):
        f.save_to(tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_that_was_stored_reads_as_empty(storage):
    f = File.objects.create(name="zero", type="t")
    f.putfile(io.BytesIO(b""))
    with File.objects.get(pk=f.pk).getfile() as fp:
        assert fp.read() == b""


def test_stale_instance_reads_the_current_content(storage, mode):
    old, new = os.urandom(3 * BLOB), os.urandom(5 * BLOB + 7)
    f = File.objects.create(name="s", type="t")
    f.putfile(io.BytesIO(old), blob_size=BLOB)
    stale = File.objects.get(pk=f.pk)
    File.objects.get(pk=f.pk).putfile(io.BytesIO(new), blob_size=BLOB)  # "another process"
    with stale.getfile(**MODES[mode]) as fp:
        assert fp.read() == new
    assert stale.size == len(new)


@pytest.mark.parametrize("mode", ["default", "lazy", "readahead"])
def test_whole_file_read_costs_its_size_once(fs_storage, mode):
    size = 8 * 1024 * 1024
    f = File.objects.create(name="m", type="t")
    f.putfile(io.BytesIO(os.urandom(size)), blob_size=BLOB)
    with f.getfile(**MODES[mode]) as fp:
        tracemalloc.start()
        try:
            data = fp.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(data) == size
    # The result once, plus the blobs in flight (window of at most 8 x 64 KiB).
    assert peak < size * 1.2, f"peak {peak / size:.2f} x the file size"


@pytest.mark.parametrize(
    "bad",
    [
        b"bytes",
        bytearray(b"x"),
        "a str",
        io.StringIO("text"),
    ],
    ids=["bytes", "bytearray", "str", "StringIO"],
)
def test_putfile_refuses_what_is_not_a_binary_file(storage, bad):
    f = File.objects.create(name="t", type="t")
    with pytest.raises(TypeError, match="binary file object"):
        f.putfile(bad)
    assert FileBlob.objects.count() == 0 and storage.object_names() == []


def test_putfile_refuses_a_text_mode_file(storage, tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_text("hello")
    f = File.objects.create(name="t", type="t")
    with path.open() as text, pytest.raises(TypeError, match="binary"):
        f.putfile(text)


@pytest.mark.parametrize("option", ["blob_size", "workers"])
@pytest.mark.parametrize("value", [0, -1])
def test_zero_or_negative_sizes_are_refused_not_replaced(storage, option, value):
    f = File.objects.create(name="t", type="t")
    with pytest.raises(ValueError, match=f"{option} must be at least 1"):
        f.putfile(io.BytesIO(b"data"), **{option: value})
    with pytest.raises(TypeError, match=f"{option} must be an int"):
        f.putfile(io.BytesIO(b"data"), **{option: 1.5})


def test_a_stream_returning_more_than_asked_is_refused(storage):
    class Greedy(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return b"x" * (n + 10)

    f = File.objects.create(name="t", type="t")
    with pytest.raises(ValueError, match=r"read\(64\) returned 74 bytes"):
        f.putfile(Greedy(), blob_size=64)
    assert FileBlob.objects.count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        ["Content-Type", "text/plain"],
        "text/plain",
        {"Content-Length": 5},
        {"X": "a\r\nSet-Cookie: x"},
    ],
    ids=["list", "str", "int-value", "crlf"],
)
def test_headers_must_be_a_dict_of_strings(storage, headers):
    f = File(name="h", type="t", headers=headers)
    with pytest.raises(ValidationError) as info:
        f.full_clean()
    assert "headers" in info.value.message_dict
    with pytest.raises(ValueError, match="header"):
        f.putfile(io.BytesIO(b"never stored"))
    assert not File.objects.filter(name="h").exists()
    assert storage.object_names() == []


def test_from_file_reads_a_django_file_from_its_start(storage):
    content = ContentFile(b"sentry chunk")
    first = FileBlob.from_file(content)
    second = FileBlob.from_file(content)  # the position is at EOF after the first
    assert first.pk == second.pk
    assert second.size == len(b"sentry chunk")
