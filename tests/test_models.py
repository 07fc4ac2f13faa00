"""Model shape: Sentry's columns, 64-bit sizes and offsets, help_text everywhere."""

from __future__ import annotations

import io
import os

import pytest
from django.apps import apps
from django.db import models

from chunkfiles.models import File, FileBlob, FileBlobIndex

GIB = 1024**3
MIB = 1024**2


def test_every_field_has_help_text():
    for model in apps.get_app_config("chunkfiles").get_models():
        for field in model._meta.get_fields():
            if field.concrete and not field.primary_key:
                assert field.help_text, f"{model.__name__}.{field.name} has no help_text"
    assert File._meta.get_field("blobs").help_text


def test_columns_mirror_sentry():
    def columns(model: type[models.Model]) -> set[str]:
        return {f.column for f in model._meta.concrete_fields}

    sentry = {"id", "path", "size", "checksum", "timestamp"}
    # Sentry's columns, plus where the object lives (storage moves), when it was
    # found missing (healing) and since when no file uses it (GC grace).
    assert columns(FileBlob) == sentry | {"storage", "lost_at", "unused_since"}
    assert columns(File) == {"id", "name", "type", "timestamp", "headers", "size", "checksum"}
    assert columns(FileBlobIndex) == {"id", "file_id", "blob_id", "offset"}
    assert FileBlob._meta.get_field("checksum").unique
    assert File._meta.get_field("checksum").db_index
    assert FileBlobIndex._meta.get_field("blob").remote_field.on_delete is models.PROTECT
    assert FileBlobIndex._meta.get_field("file").remote_field.on_delete is models.CASCADE
    (unique,) = FileBlobIndex._meta.constraints
    assert unique.fields == ("file", "blob", "offset")


@pytest.mark.django_db
def test_offsets_and_sizes_beyond_4_gib_round_trip():
    blob = FileBlob.objects.create(checksum="0" * 64, path="p", size=6 * GIB)
    f = File.objects.create(name="big", type="t", size=9 * GIB + 1)
    FileBlobIndex.objects.create(file=f, blob=blob, offset=5 * GIB + 3)
    row = FileBlobIndex.objects.get(file=f)
    assert row.offset == 5 * GIB + 3
    assert FileBlob.objects.get(pk=blob.pk).size == 6 * GIB
    assert File.objects.get(pk=f.pk).size == 9 * GIB + 1
    assert FileBlobIndex.objects.filter(offset__gt=4 * GIB).count() == 1


@pytest.mark.django_db
def test_reading_past_4_gib_through_index_rows(storage):
    """A 5 GiB file made of one 1 MiB blob repeated: seek and read beyond 4 GiB."""
    chunk = os.urandom(MIB)
    blob = FileBlob.from_file(io.BytesIO(chunk))
    count = 5 * 1024 + 1
    f = File.objects.create(name="huge", type="t", size=count * MIB)
    FileBlobIndex.objects.bulk_create(
        FileBlobIndex(file=f, blob=blob, offset=i * MIB) for i in range(count)
    )
    for kwargs in ({}, {"readahead": 2}):
        with f.getfile(**kwargs) as fp:
            assert fp.size == count * MIB
            target = 4 * GIB + 12345
            assert fp.seek(target) == target
            assert fp.read(100) == chunk[12345:12445]
            assert fp.seek(-10, io.SEEK_END) == count * MIB - 10
            assert fp.read() == chunk[-10:]


@pytest.mark.django_db
def test_deleting_a_file_keeps_its_blobs_and_protects_them(storage):
    f = File.objects.create(name="a", type="t")
    f.putfile(io.BytesIO(b"data"), blob_size=2)
    blob = f.blobs.first()
    assert blob is not None
    with pytest.raises(models.ProtectedError):
        blob.delete()
    f.delete()
    assert FileBlob.objects.count() == 2
    assert FileBlob.objects.unreferenced().count() == 2


def test_str():
    assert str(File(name="report.pdf")) == "report.pdf"
    assert str(FileBlob(checksum="ab" * 32)) == "ab" * 32
