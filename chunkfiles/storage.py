"""The only module that talks to Django's storage API.

Blob bytes go in and out through a ``BlobStore``: ``get(name)``,
``put(data)`` and ``delete(name)``. For django-storages' S3 backend the
store is ``chunkfiles.s3.S3BlobStore``, which makes exactly one request per
operation through one shared, thread-safe boto3 client; every other storage
goes through ``storage.open()`` / ``storage.save()``.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from .conf import chunkfiles_settings


class BlobStore(Protocol):
    """Moves whole blobs between memory and storage. Safe to share between threads."""

    def get(self, name: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` if there is no such object."""

    def put(self, data: bytes, checksum: str) -> str:
        """Store ``data`` (whose SHA-256 hex is ``checksum``) under a new name; return it."""

    def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""


def blob_storage() -> Storage:
    """The Django storage named by ``CHUNKFILES['STORAGE']`` (built lazily by Django)."""
    return storages[chunkfiles_settings.STORAGE]


def new_blob_name() -> str:
    """A fresh storage name for a blob.

    Names are random, not derived from the checksum: an object that lost an
    upload race, or an orphan swept by garbage collection, can then be
    deleted without any chance of removing bytes another row points to.
    """
    token = uuid.uuid4().hex
    return f"{chunkfiles_settings.BLOB_PREFIX}{token[:2]}/{token[2:4]}/{token[4:]}"


class StorageBlobStore:
    """Blob I/O through the plain Django storage API (filesystem and others)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, name: str) -> bytes:
        with self.storage.open(name, "rb") as fh:
            data = fh.read()
        return bytes(data)

    def put(self, data: bytes, checksum: str) -> str:
        # save() returns the name actually used (it may differ if taken).
        return self.storage.save(new_blob_name(), ContentFile(data))

    def delete(self, name: str) -> None:
        self.storage.delete(name)


def blob_store(connections: int = 1) -> BlobStore:
    """The store for the configured storage, able to serve ``connections`` threads at once."""
    storage = blob_storage()
    from . import s3

    if s3.is_s3_storage(storage):
        return s3.S3BlobStore.for_storage(storage, connections)
    return StorageBlobStore(storage)
