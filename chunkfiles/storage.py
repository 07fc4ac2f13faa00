"""The only module that moves blob objects in and out of Django storages.

A ``BlobStore`` wraps one backend's single-attempt operations (``RawStore``)
and owns what every backend needs: retries of transient faults with jittered
backoff under a deadline, verification of bytes against their checksum, and
errors that name the object. ``blob_store(alias)`` picks the backend:
``chunkfiles.s3.S3RawStore`` for django-storages' S3 backend (one request per
operation through a shared, thread-safe client), ``StorageRawStore`` (the
plain Django storage API) for everything else.

Names of new objects are made here, by ``new_blob_name()``; the caller of
``put`` owns the name, so a failed write still leaves a name to clean up.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

from .conf import chunkfiles_settings, current_storage
from .exceptions import BlobWriteError
from .retry import RetryPolicy, retrying

logger = logging.getLogger(__name__)


class ObjectCorruptError(OSError):
    """Stored bytes did not match the size or checksum they were stored with."""


class RawStore(Protocol):
    """One backend's operations, one attempt each. Safe to share between threads."""

    def get(self, name: str, deadline: float) -> bytes:
        """The object's bytes; ``FileNotFoundError`` if there is no such object."""

    def put(self, name: str, data: bytes, checksum: str) -> str:
        """Store ``data`` (SHA-256 hex ``checksum``) as ``name``; return the name used."""

    def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""

    def exists(self, name: str) -> bool:
        """Whether the object exists."""

    def iter_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Storage names under ``prefix`` with their modification time."""

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a failed call may succeed when tried again."""


def new_blob_name() -> str:
    """A fresh storage name for a blob.

    Random, not derived from the checksum: an object that lost an upload
    race, or an orphan swept by garbage collection, can then be deleted
    without any chance of removing bytes another row points to.
    """
    token = uuid.uuid4().hex
    return f"{chunkfiles_settings.BLOB_PREFIX}{token[:2]}/{token[2:4]}/{token[4:]}"


def check_bytes(data: bytes, size: int, checksum: str) -> str | None:
    """Why ``data`` is not the blob (size, then SHA-256), or None when it is."""
    if len(data) != size:
        return f"expected {size} bytes, storage returned {len(data)}"
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:
        return f"stored bytes hash to {actual}"
    return None


def verified(
    get: Callable[[], bytes],
    size: int,
    checksum: str,
    policy: RetryPolicy,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> bytes:
    """``get()``'s bytes, checked against ``size`` and SHA-256 ``checksum``.

    Bytes that fail the check are fetched again (a body damaged on the way);
    ``ObjectCorruptError`` when every attempt disagrees.
    """

    def attempt(deadline: float) -> bytes:
        data = get()
        problem = check_bytes(data, size, checksum)
        if problem:
            raise ObjectCorruptError(problem)
        return data

    return retrying(policy, attempt, lambda exc: isinstance(exc, ObjectCorruptError), on_retry)


class BlobStore:
    """Retries, verification and errors over a ``RawStore``; see the module docstring."""

    def __init__(self, raw: RawStore, alias: str, policy: RetryPolicy | None = None) -> None:
        self.raw = raw
        self.alias = alias
        self.policy = policy or RetryPolicy.from_settings()

    def __repr__(self) -> str:
        return f"<BlobStore {self.alias!r} {type(self.raw).__name__}>"

    def _retry(self, what: str, name: str) -> Callable[[int, BaseException], None]:
        def log(tries: int, exc: BaseException) -> None:
            logger.info(
                "retrying %s of %r in %r after %s: %s",
                what,
                name,
                self.alias,
                type(exc).__name__,
                exc,
            )

        return log

    def get(self, name: str) -> bytes:
        """The object's bytes; transient faults are retried, a missing object is not."""
        return retrying(
            self.policy,
            lambda deadline: self.raw.get(name, deadline),
            self.raw.is_transient,
            self._retry("GET", name),
        )

    def get_verified(self, name: str, size: int, checksum: str) -> bytes:
        """The object's bytes, checked and fetched again if damaged; see ``verified``."""
        return verified(
            lambda: self.get(name), size, checksum, self.policy, self._retry("verified GET", name)
        )

    def put(self, name: str, data: bytes, checksum: str) -> str:
        """Write ``data`` as ``name`` (retried); ``BlobWriteError`` naming it on failure."""
        try:
            return retrying(
                self.policy,
                lambda deadline: self.raw.put(name, data, checksum),
                self.raw.is_transient,
                self._retry("PUT", name),
            )
        except Exception as exc:
            raise BlobWriteError(checksum, name, f"{type(exc).__name__}: {exc}") from exc

    def delete(self, name: str, *, retry: bool = True) -> None:
        """Remove the object (retried unless ``retry=False``); a missing object is not an error."""
        retrying(
            self.policy if retry else self.policy._replace(attempts=1),
            lambda deadline: self.raw.delete(name),
            self.raw.is_transient,
            self._retry("DELETE", name),
        )

    def exists(self, name: str) -> bool:
        """Whether the object exists (retried)."""
        return retrying(self.policy, lambda deadline: self.raw.exists(name), self.raw.is_transient)

    def iter_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Storage names under ``prefix`` (e.g. ``BLOB_PREFIX``) and their modification times."""
        return self.raw.iter_objects(prefix)


class StorageRawStore:
    """Blob I/O through the plain Django storage API (filesystem and others)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, name: str, deadline: float) -> bytes:
        with self.storage.open(name, "rb") as fh:
            data = fh.read()
        return bytes(data)

    def put(self, name: str, data: bytes, checksum: str) -> str:
        # save() returns the name actually used (it differs if the name was taken,
        # e.g. by the partial file of a failed attempt).
        return self.storage.save(name, ContentFile(data))

    def delete(self, name: str) -> None:
        self.storage.delete(name)

    def exists(self, name: str) -> bool:
        return bool(self.storage.exists(name))

    def iter_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        top = prefix.rstrip("/")
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                dirs, files = self.storage.listdir(directory)
            except FileNotFoundError:
                continue
            pending.extend(posixpath.join(directory, d) for d in dirs)
            for f in files:
                name = posixpath.join(directory, f)
                try:
                    yield name, self.storage.get_modified_time(name)
                except FileNotFoundError:  # deleted while we listed
                    continue

    def is_transient(self, exc: BaseException) -> bool:
        # A local or network filesystem error may pass; a missing file or a
        # permission problem will not.
        return isinstance(exc, OSError) and not isinstance(
            exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
        )


def blob_storage(alias: str | None = None) -> Storage:
    """The Django storage ``alias`` (default ``CHUNKFILES['STORAGE']``), built lazily by Django."""
    return storages[current_storage() if alias is None else alias]


def blob_store(alias: str | None = None, connections: int = 1) -> BlobStore:
    """The store for ``alias`` (default ``CHUNKFILES['STORAGE']``) for ``connections`` threads.

    Cheap enough to call per operation, so callers keep no caches of their
    own: Django builds each storage once, and the S3 client (the costly part)
    is built once per storage and shared (``S3RawStore.for_storage``). A
    blob row's recorded storage goes through ``conf.blob_alias`` first; ''
    is no alias.
    """
    alias = current_storage() if alias is None else alias
    storage = storages[alias]
    from . import s3

    raw: RawStore
    if s3.is_s3_storage(storage):
        raw = s3.S3RawStore.for_storage(
            storage,
            connections,
            connect_timeout=float(chunkfiles_settings.CONNECT_TIMEOUT),
            read_timeout=float(chunkfiles_settings.READ_TIMEOUT),
        )
    else:
        raw = StorageRawStore(storage)
    return BlobStore(raw, alias)
