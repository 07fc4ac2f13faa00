"""Two blob storages for move and Celery tests: ``disk`` (filesystem), ``bucket`` (SeaweedFS)."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.test import override_settings

from chunkfiles.models import File, FileBlob
from testproject.seaweed import SeaweedS3
from tests.conftest import BUCKET, StorageSetup, s3_options

BLOB = 4096


class Stores:
    """The two storages of a move test: ``disk`` (filesystem) and ``bucket`` (SeaweedFS)."""

    def __init__(self, disk: StorageSetup, bucket: StorageSetup) -> None:
        self.by_alias = {"disk": disk, "bucket": bucket}

    def objects(self, alias: str) -> set[str]:
        return set(self.by_alias[alias].object_names())

    def etags(self, prefix: str) -> dict[str, str]:
        """Names under ``prefix`` in ``bucket`` and their ETags (MD5 of single-part objects)."""
        bucket = self.by_alias["bucket"]
        assert bucket.server is not None
        client = bucket.server.client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=f"{bucket.location}/{prefix}"
            )
            skip = len(bucket.location) + 1
            return {
                obj["Key"][skip:]: obj["ETag"].strip('"')
                for page in pages
                for obj in page.get("Contents", [])
            }
        finally:
            client.close()

    def check_rows(self) -> None:
        """Every blob row that is not lost names an object that exists in its storage."""
        present = {alias: self.objects(alias) for alias in self.by_alias}
        for pk, path, alias in FileBlob.objects.stored().values_list("pk", "path", "storage"):
            assert path in present[alias], f"blob {pk} names {path!r}, missing in {alias!r}"

    def orphans(self, alias: str) -> set[str]:
        named = set(FileBlob.objects.filter(storage=alias).values_list("path", flat=True))
        return self.objects(alias) - named


@contextlib.contextmanager
def two_storages(server: SeaweedS3, root: Path) -> Iterator[Stores]:
    """``disk`` under ``root`` and ``bucket`` (a fresh S3 prefix) in STORAGES; blobs to disk."""
    location = f"t-{uuid.uuid4().hex[:12]}"
    disk = StorageSetup("fs", "disk", {"location": str(root / "disk")})
    bucket = StorageSetup(
        "s3", "bucket", s3_options(server, location), server=server, location=location
    )
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "disk": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": disk.options},
        "bucket": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": bucket.options},
    }
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "disk"}):
        yield Stores(disk, bucket)


def content(seed: int, blobs: int) -> bytes:
    """Bytes made of blobs shared between seeds: blob i of any seed is one of 8 patterns."""
    return b"".join(bytes([(seed * i) % 8]) * BLOB for i in range(blobs)) + seed.to_bytes(4, "big")


def make_files(count: int, blobs: int = 6) -> dict[int, bytes]:
    made = {}
    for seed in range(count):
        data = content(seed, blobs)
        f = File.objects.create(name=f"f{seed}", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        made[f.pk] = data
    return made


def read_all(files: dict[int, bytes]) -> None:
    for pk, data in files.items():
        with File.objects.get(pk=pk).getfile() as fh:
            assert fh.read() == data, f"file {pk} reads back wrong"
