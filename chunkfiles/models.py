"""The three tables of Sentry's file store, with 64-bit sizes and offsets.

``FileBlob`` is a content-addressed object in storage, stored once per
checksum. ``File`` is an ordered list of blobs, linked by ``FileBlobIndex``
rows that carry each blob's offset in the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, cast

from django.core.files.base import File as DjangoFile
from django.db import models, router
from django.db.models import Count, Sum
from django.utils import timezone

from .conf import blob_alias, current_storage, recorded_values

if TYPE_CHECKING:
    from .refs import BlobRef
    from .upload import UploadItem


class FileBlobQuerySet(models.QuerySet["FileBlob"]):
    """Query vocabulary for blobs."""

    def by_checksums(self, checksums: Iterable[str]) -> dict[str, FileBlob]:
        """Existing blobs keyed by checksum, in as few queries as the backend allows."""
        from .upload import CHECKSUM_BATCH

        wanted = list(dict.fromkeys(checksums))
        found: dict[str, FileBlob] = {}
        for start in range(0, len(wanted), CHECKSUM_BATCH):
            batch = wanted[start : start + CHECKSUM_BATCH]
            found.update((b.checksum, b) for b in self.filter(checksum__in=batch))
        return found

    def unreferenced(self) -> FileBlobQuerySet:
        """Blobs that no file uses any more (garbage collection candidates)."""
        return self.filter(~models.Exists(FileBlobIndex.objects.filter(blob=models.OuterRef("pk"))))

    def referenced(self) -> FileBlobQuerySet:
        """Blobs that at least one file uses."""
        return self.filter(models.Exists(FileBlobIndex.objects.filter(blob=models.OuterRef("pk"))))

    def lost(self) -> FileBlobQuerySet:
        """Blobs whose object was found gone; the next upload of their bytes heals them."""
        return self.filter(lost_at__isnull=False)

    def stored(self) -> FileBlobQuerySet:
        """Blobs believed to have their object (not marked lost)."""
        return self.filter(lost_at__isnull=True)

    def in_storage(self, alias: str) -> FileBlobQuerySet:
        """Blobs whose object lives in the ``STORAGES`` alias ``alias``."""
        return self.filter(storage__in=recorded_values(alias))

    def outside_storage(self, alias: str) -> FileBlobQuerySet:
        """Blobs whose object lives in any ``STORAGES`` alias but ``alias``."""
        return self.exclude(storage__in=recorded_values(alias))

    def aliases(self) -> list[str]:
        """The ``STORAGES`` aliases holding these blobs' objects, sorted (one query)."""
        recorded = self.order_by().values_list("storage", flat=True).distinct()
        return sorted({blob_alias(value) for value in recorded})

    def totals_by_storage(self) -> dict[str, tuple[int, int]]:
        """``alias -> (blobs, bytes)`` of these blobs, sorted by alias (one query)."""
        totals: dict[str, tuple[int, int]] = {}
        rows = self.order_by().values_list("storage").annotate(n=Count("pk"), size=Sum("size"))
        for recorded, n, size in rows:
            alias = blob_alias(recorded)  # '' and STORAGE's own name add up
            blobs, nbytes = totals.get(alias, (0, 0))
            totals[alias] = (blobs + n, nbytes + (size or 0))
        return dict(sorted(totals.items()))

    def mark_lost(self, *, path: str | None = None) -> int:
        """Mark these blobs lost (their object is gone); returns how many changed.

        With ``path``, only rows still naming that object are marked, so a blob
        healed or moved meanwhile is left alone.
        """
        rows = self.filter(lost_at__isnull=True)
        if path is not None:
            rows = rows.filter(path=path)
        return rows.update(lost_at=timezone.now())


class FileBlob(models.Model):
    """One stored object, identified by the SHA-256 of its bytes."""

    # Nullable like Sentry's column: NULL (no object) is not the same as "".
    path = models.TextField(  # noqa: DJ001
        null=True,
        help_text="Name of the object in the blob storage (the STORAGES alias in ``storage``).",
    )
    size = models.PositiveBigIntegerField(null=True, help_text="Length of the blob in bytes.")
    checksum = models.CharField(
        max_length=64,
        unique=True,
        help_text=(
            "SHA-256 hex digest of the blob's bytes; the deduplication key. "
            "SHA-256, not Sentry's SHA-1, so colliding inputs are never merged."
        ),
    )
    timestamp = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="When the blob was first stored."
    )
    # Always recorded: a row that relied on CHUNKFILES['STORAGE'] would be read
    # from the wrong storage once that setting changed.
    storage = models.CharField(
        max_length=64,
        default=current_storage,
        help_text=(
            "Alias in STORAGES that holds the object; defaults to CHUNKFILES['STORAGE'] "
            "when the row is created."
        ),
    )
    lost_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=(
            "When the object was found missing from storage. Dedupe ignores lost blobs; "
            "the next upload of the same bytes writes the object again and clears this."
        ),
    )
    unused_since = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text=(
            "When garbage collection first saw no file using the blob; it is removed "
            "once this is older than CHUNKFILES['GC_GRACE']. Cleared when a file uses it."
        ),
    )

    objects = FileBlobQuerySet.as_manager()

    class Meta:
        verbose_name = "file blob"
        # Orphan collection looks names up in batches (path IN ...). Migration
        # 0005 builds it by hand: a prefix index on MySQL, CONCURRENTLY on PostgreSQL.
        indexes = [models.Index(fields=["path"], name="chunkfiles_blob_path")]

    def __str__(self) -> str:
        return self.checksum

    @property
    def storage_alias(self) -> str:
        """The ``STORAGES`` alias holding this blob's object (see ``conf.blob_alias``)."""
        return blob_alias(self.storage)

    @classmethod
    def from_file(cls, fileobj: IO[bytes] | DjangoFile[bytes]) -> FileBlob:
        """Store the whole of ``fileobj`` as one blob, or return the blob that has its bytes.

        A Django ``File`` is read from its start, as ``Storage.save()`` (and
        Sentry) do; a plain file object is read from where it stands.
        """
        return cls.from_files([fileobj])[0]

    @classmethod
    def from_files(
        cls, files: Iterable[UploadItem], *, workers: int | None = None, using: str | None = None
    ) -> list[FileBlob]:
        """Store many blobs at once; items are file objects or ``(fileobj, checksum)``.

        A given checksum (SHA-256, or SHA-1 for Sentry clients) is checked
        before anything is written; a mismatch raises ``ChecksumMismatchError``
        (a ``ValueError`` and an ``OSError``). Returns the blobs in the order given.
        """
        from .upload import store_blobs

        return store_blobs(files, workers=workers, using=using)

    def getfile(self) -> DjangoFile[bytes]:
        """The blob's bytes, verified, as a Django file."""
        from .reader import open_refs
        from .refs import BlobRef

        ref = BlobRef(0, self.size or 0, self.checksum, self.path, self.storage, self.pk)
        wrapper = open_refs([ref], readahead=False)
        return DjangoFile(cast(IO[bytes], wrapper), name=self.checksum)

    @classmethod
    def generate_unique_path(cls) -> str:
        """A fresh random storage name for a blob; Sentry's name for ``new_blob_name()``."""
        from .storage import new_blob_name

        return new_blob_name()


class File(models.Model):
    """A named file made of blobs, in the order of their offsets."""

    name = models.TextField(help_text="File name shown to users, e.g. 'report.pdf'.")
    type = models.CharField(
        max_length=64, help_text="Free-form category of the file, e.g. 'artifact'."
    )
    timestamp = models.DateTimeField(
        default=timezone.now, db_index=True, help_text="When the file was created."
    )
    headers = models.JSONField(
        default=dict, blank=True, help_text="HTTP-style headers, e.g. Content-Type."
    )
    size = models.PositiveBigIntegerField(
        null=True, help_text="Length of the file in bytes; set by putfile()."
    )
    # NULL until putfile() has run, as in Sentry.
    checksum = models.CharField(  # noqa: DJ001
        max_length=40,
        null=True,
        db_index=True,
        help_text="SHA-1 hex digest of the whole file (as in Sentry); set by putfile().",
    )
    blobs = models.ManyToManyField(
        FileBlob, through="FileBlobIndex", help_text="The blobs making up the file."
    )

    class Meta:
        verbose_name = "file"
        # The admin sorts by size and filters by type over millions of rows.
        indexes = [
            models.Index(fields=["size"], name="chunkfiles_file_size"),
            models.Index(fields=["type", "timestamp"], name="chunkfiles_file_type_time"),
        ]

    def __str__(self) -> str:
        return self.name

    def _db_for_write(self) -> str:
        return self._state.db or router.db_for_write(File, instance=self)

    def putfile(
        self,
        fileobj: IO[bytes] | DjangoFile[bytes],
        blob_size: int | None = None,
        commit: bool = True,
        *,
        workers: int | None = None,
    ) -> list[FileBlobIndex]:
        """Store the contents of ``fileobj`` (read to EOF) as this file's blobs.

        New blobs are written concurrently; blobs already stored are reused.
        The index rows (and, with ``commit``, this row) are written in one
        transaction, replacing any previous content. Sets ``size`` and
        ``checksum``. With ``commit=False`` the row must already be saved and
        the caller saves ``size``/``checksum``.
        """
        from .upload import put_file

        return put_file(self, fileobj, blob_size=blob_size, commit=commit, workers=workers)

    def _db_for_read(self) -> str:
        return self._state.db or router.db_for_read(FileBlobIndex, instance=self)

    def blob_refs(self) -> list[BlobRef]:
        """The file's blobs in order, as ``BlobRef`` values, loaded in one query."""
        from .refs import file_refs

        return file_refs(self, self._db_for_read())

    def getfile(
        self,
        mode: str | None = None,
        prefetch: bool = False,
        *,
        readahead: int | bool | None = None,
        workers: int | None = None,
        temp_dir: str | None = None,
    ) -> DjangoFile[bytes]:
        """Open the file for reading; see ``chunkfiles.reader`` for the read modes.

        Costs one query and no storage request until the first read (prefetch
        excepted). Raises ``FileNotStoredError`` if the content was never stored.
        """
        from .reader import open_file

        if mode not in (None, "r", "rb"):
            raise ValueError(f"chunkfiles files are read-only; mode {mode!r} is not supported")
        wrapper = open_file(
            self,
            using=self._db_for_read(),
            prefetch=prefetch,
            readahead=readahead,
            workers=workers,
            temp_dir=temp_dir,
        )
        # A RawIOBase is a binary file; typeshed just does not spell it IO[bytes].
        return DjangoFile(cast(IO[bytes], wrapper), name=self.name)

    def save_to(self, path: str | os.PathLike[str], *, workers: int | None = None) -> str:
        """Write the file to ``path`` atomically, creating missing parent directories.

        No partial file is ever left; returns the absolute path written.
        """
        from .conf import chunkfiles_settings
        from .fetch import storage_fetch
        from .prefetch import save_refs_to
        from .reader import stored_refs
        from .refs import relocate

        using = self._db_for_read()
        workers = workers or chunkfiles_settings.PREFETCH_WORKERS
        return save_refs_to(
            stored_refs(self, using),
            path,
            fetch=storage_fetch(workers),
            file_id=self.pk,
            expected_size=self.size,
            workers=workers,
            relocate=lambda ref: relocate(ref, using),
            close_timeout=float(chunkfiles_settings.CLOSE_TIMEOUT),
        )

    def clean(self) -> None:
        """Validate ``headers``: a dict of strings (the admin download serves them)."""
        from django.core.exceptions import ValidationError

        from .upload import headers_problem

        problem = headers_problem(self.headers)
        if problem:
            raise ValidationError({"headers": problem})

    def assemble_from_file_blob_ids(
        self, file_blob_ids: Iterable[int], checksum: str, *, temp_dir: str | None = None
    ) -> IO[bytes]:
        """Make this file of stored blobs, in the order given; Sentry's chunk-upload step.

        Refuses (``ChecksumMismatchError``, nothing linked) when the bytes do
        not hash to ``checksum``; returns a temp file holding them, as Sentry does.
        See ``chunkfiles.assemble``.
        """
        from .assemble import assemble_file

        return assemble_file(self, file_blob_ids, checksum, temp_dir=temp_dir)


class FileBlobIndex(models.Model):
    """Places a blob at an offset of a file."""

    file = models.ForeignKey(
        File, on_delete=models.CASCADE, help_text="The file this blob belongs to."
    )
    blob = models.ForeignKey(
        FileBlob,
        on_delete=models.PROTECT,
        help_text="The blob stored at this offset; protected while any file uses it.",
    )
    offset = models.PositiveBigIntegerField(
        help_text="Byte offset of the blob in the file (64-bit: files may exceed 4 GiB)."
    )

    class Meta:
        verbose_name = "file blob index"
        verbose_name_plural = "file blob indexes"
        constraints = [
            models.UniqueConstraint(
                fields=["file", "blob", "offset"], name="chunkfiles_fileblobindex_unique"
            )
        ]
        indexes = [models.Index(fields=["file", "offset"], name="chunkfiles_index_file_offset")]

    def __str__(self) -> str:
        return f"{self.file_id}@{self.offset}"


class SentryImport(models.Model):
    """Records which Sentry file became which ``File``, so an import never runs twice."""

    source = models.CharField(
        max_length=64,
        help_text="DATABASES alias of the Sentry database the file was read from.",
    )
    sentry_file_id = models.BigIntegerField(help_text="id of the file in Sentry's sentry_file.")
    file = models.OneToOneField(
        File,
        on_delete=models.CASCADE,
        related_name="sentry_import",
        help_text="The file the Sentry file was imported as; deleting it allows a re-import.",
    )
    imported_at = models.DateTimeField(
        default=timezone.now, help_text="When chunkfiles_import_sentry imported the file."
    )

    class Meta:
        verbose_name = "Sentry import"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "sentry_file_id"], name="chunkfiles_sentryimport_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.sentry_file_id} -> {self.file_id}"
