"""Database routers: the tables may live on their own database alias."""

from __future__ import annotations

import io
import os

import pytest
from django.test import override_settings

from chunkfiles.models import File, FileBlob, FileBlobIndex

ROUTER = ["testproject.routers.ChunkfilesRouter"]


@pytest.mark.django_db(databases=["default", "files"])
def test_upload_and_read_stay_on_the_routed_database(storage):
    data = os.urandom(50_000)
    with override_settings(DATABASE_ROUTERS=ROUTER):
        f = File.objects.create(name="routed", type="t")
        assert f._state.db == "files"
        f.putfile(io.BytesIO(data), blob_size=8192)
        blobs = FileBlob.from_files([io.BytesIO(b"loose blob")])
        assert blobs[0]._state.db == "files"
        with f.getfile(readahead=2) as fp:
            assert fp.read() == data
        assert File.objects.get(pk=f.pk).size == len(data)
    assert FileBlob.objects.using("files").count() == 8
    assert FileBlobIndex.objects.using("files").count() == 7
    for model in (File, FileBlob, FileBlobIndex):
        assert model.objects.using("default").count() == 0, model


@pytest.mark.django_db(databases=["default", "files"])
def test_using_a_database_explicitly_without_router(storage):
    f = File(name="explicit", type="t")
    f.save(using="files")
    f.putfile(io.BytesIO(b"abc" * 1000), blob_size=1000)
    assert FileBlob.objects.using("files").count() == 3
    assert FileBlob.objects.using("default").count() == 0
    with File.objects.using("files").get(pk=f.pk).getfile() as fp:
        assert fp.read() == b"abc" * 1000
