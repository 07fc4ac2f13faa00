"""Storage selection through STORAGES, and the S3 fast path's request budget."""

from __future__ import annotations

import collections
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.test import override_settings

from chunkfiles import s3
from chunkfiles.models import File
from chunkfiles.storage import StorageRawStore, blob_storage, blob_store

from .conftest import BUCKET, s3_options

pytestmark = pytest.mark.django_db
BLOB = 64 * 1024


class Requests:
    """Counts the HTTP requests the shared S3 client sends, by method."""

    def __init__(self) -> None:
        self.methods: collections.Counter[str] = collections.Counter()

    def __call__(self, request: Any, **kwargs: Any) -> None:
        self.methods[request.method] += 1

    def reset(self) -> None:
        self.methods.clear()


@pytest.fixture
def s3_requests(s3_storage) -> Iterator[Requests]:
    counter = Requests()
    store = blob_store(connections=s3.MIN_POOL).raw
    assert isinstance(store, s3.S3RawStore)
    store.client.meta.events.register("before-send.s3", counter)
    yield counter
    store.client.meta.events.unregister("before-send.s3", counter)


def test_alias_in_storages_selects_where_blobs_go(tmp_path):
    storages = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "default")},
        },
        "archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "archive"}):
        f = File.objects.create(name="a", type="t")
        f.putfile(io.BytesIO(b"in the archive"), blob_size=BLOB)
        assert blob_storage().location == str(tmp_path / "archive")
        with f.getfile() as fp:
            assert fp.read() == b"in the archive"
    assert list((tmp_path / "archive").rglob("*.*")) == [] and any(
        p.is_file() for p in (tmp_path / "archive").rglob("*")
    )
    assert not (tmp_path / "default").exists()


def test_storage_is_looked_up_lazily_not_at_import():
    # A broken alias only matters once blobs are read or written.
    with override_settings(CHUNKFILES={"STORAGE": "missing"}):
        import chunkfiles.models  # noqa: F401

        with pytest.raises(Exception, match="missing"):
            blob_storage()


@pytest.mark.parametrize(
    "backend", ["storages.backends.s3.S3Storage", "storages.backends.s3boto3.S3Boto3Storage"]
)
def test_both_django_storages_s3_names_take_the_fast_path(seaweed, backend, tmp_path):
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "blobs": {"BACKEND": backend, "OPTIONS": s3_options(seaweed, f"compat-{tmp_path.name}")},
    }
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
        assert isinstance(blob_store().raw, s3.S3RawStore)
        data = os.urandom(3 * BLOB)
        f = File.objects.create(name="compat", type="t")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        with f.getfile(prefetch=True) as fp:
            assert fp.read() == data
        # The objects are where django-storages itself would look for them.
        for blob in f.blobs.all():
            assert blob_storage().exists(blob.path)


def test_other_storages_go_through_storage_open(fs_storage):
    assert isinstance(blob_store().raw, StorageRawStore)
    opened: list[str] = []

    class Recording(FileSystemStorage):
        def _open(self, name: str, mode: str = "rb") -> Any:
            opened.append(name)
            return super()._open(name, mode)

    f = File.objects.create(name="fs", type="t")
    f.putfile(io.BytesIO(os.urandom(3 * BLOB)), blob_size=BLOB)
    store = blob_store()
    assert isinstance(store.raw, StorageRawStore)
    store.raw.storage = Recording(location=fs_storage.options["location"])
    assert store.get(f.blobs.first().path)
    assert len(opened) == 1


def test_one_get_per_blob_and_none_for_a_seek(s3_requests):
    data = os.urandom(8 * BLOB)
    f = File.objects.create(name="count", type="t")
    f.putfile(io.BytesIO(data), blob_size=BLOB)
    for kwargs in ({}, {"prefetch": True}, {"readahead": 3}):
        s3_requests.reset()
        with f.getfile(**kwargs) as fp:
            assert fp.read() == data
        assert s3_requests.methods == {"GET": 8}, kwargs
    s3_requests.reset()
    with f.getfile() as fp:
        fp.seek(5 * BLOB + 10)
        assert s3_requests.methods == {}
        assert fp.read(10) == data[5 * BLOB + 10 : 5 * BLOB + 20]
    assert s3_requests.methods == {"GET": 1}


def test_one_put_per_new_blob_and_none_for_known_content(s3_requests):
    data = os.urandom(6 * BLOB)
    s3_requests.reset()
    File.objects.create(name="a", type="t").putfile(io.BytesIO(data), blob_size=BLOB)
    assert s3_requests.methods == {"PUT": 6}
    s3_requests.reset()
    File.objects.create(name="b", type="t").putfile(io.BytesIO(data), blob_size=BLOB)
    assert s3_requests.methods == {}


def test_shared_client_pool_covers_the_workers(s3_storage, caplog):
    store = blob_store(connections=48).raw
    assert store is blob_store(connections=8).raw, "one client is shared, not one per call"
    assert store.client.meta.config.max_pool_connections >= 48
    data = os.urandom(64 * 1024)
    f = File.objects.create(name="pool", type="t")
    f.putfile(io.BytesIO(data), blob_size=1024, workers=48)
    with (
        caplog.at_level(logging.WARNING, logger="urllib3"),
        f.getfile(prefetch=True, workers=48) as fp,
    ):
        assert fp.read() == data
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_location_prefix_is_honoured(s3_storage):
    storage = s3_storage
    f = File.objects.create(name="k", type="t")
    f.putfile(io.BytesIO(b"where am i"), blob_size=BLOB)
    blob = f.blobs.get()
    assert storage.object_names() == [blob.path]
    assert blob.path.startswith("chunkfiles/")
    client = storage.server.client()
    try:
        key = f"{storage.location}/{blob.path}"
        assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"where am i"
    finally:
        client.close()


def test_blob_prefix_setting(tmp_path: Path):
    storages = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        }
    }
    with override_settings(STORAGES=storages, CHUNKFILES={"BLOB_PREFIX": "blobs/v1/"}):
        f = File.objects.create(name="p", type="t")
        f.putfile(io.BytesIO(b"x"))
        assert f.blobs.get().path.startswith("blobs/v1/")
