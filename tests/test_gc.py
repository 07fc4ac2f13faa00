"""Garbage collection (chunkfiles.gc, chunkfiles_gc) and healing of lost blobs.

Every test runs on the filesystem and on SeaweedFS S3. The races against
concurrent uploads and the SIGKILL test are in test_gc_race.py.
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models.signals import pre_delete
from django.test import override_settings
from django.utils import timezone

from chunkfiles.exceptions import BlobMissingError
from chunkfiles.gc import GcError, collect_blobs, mark_unused
from chunkfiles.models import File, FileBlob, FileBlobIndex
from chunkfiles.orphans import collect_orphans

pytestmark = pytest.mark.django_db

BLOB = 1024
#: Four distinct blobs; files are made of them so that they share some.
A, B, C, D = (bytes([i]) * BLOB for i in range(1, 5))


def store(name: str, *blocks: bytes) -> File:
    f = File.objects.create(name=name, type="t")
    f.putfile(io.BytesIO(b"".join(blocks)), blob_size=BLOB, workers=2)
    return f


def read(f: File) -> bytes:
    with File.objects.get(pk=f.pk).getfile(prefetch=True) as fp:
        return bytes(fp.read())


def blob(data: bytes) -> FileBlob:
    return FileBlob.objects.get(checksum=FileBlob.from_files([io.BytesIO(data)])[0].checksum)


def row_paths() -> list[str]:
    return sorted(p for p in FileBlob.objects.values_list("path", flat=True) if p is not None)


def gc(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command("chunkfiles_gc", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


class UndeletableStorage(FileSystemStorage):
    """A filesystem storage whose deletes fail (as a storage without delete rights)."""

    def delete(self, name: str) -> None:
        raise PermissionError(f"no right to delete {name}")


class TestCollectBlobs:
    def test_deleted_file_frees_only_its_own_blobs(self, storage):
        kept = store("kept", B, C, D)
        gone = store("gone", A, B, C)
        only_gone = FileBlob.objects.get(checksum=blob(A).checksum)
        gone.delete()
        assert FileBlob.objects.count() == 4, "deleting a file must leave blobs to GC"

        output = gc(grace=0)

        assert read(kept) == B + C + D
        assert not FileBlob.objects.filter(pk=only_gone.pk).exists()
        assert FileBlob.objects.count() == 3
        assert storage.object_names() == row_paths()
        assert only_gone.path not in storage.object_names()
        assert f"Removed 1 blobs, 1.0\xa0KB ({BLOB} bytes)." in output

    def test_queryset_delete_of_files_leaves_blobs_for_gc(self, storage):
        store("one", A, B)
        store("two", C)
        File.objects.all().delete()
        assert FileBlob.objects.count() == 3
        report = collect_blobs(grace=0)
        assert (report.rows, report.bytes, report.objects) == (3, 3 * BLOB, 3)
        assert FileBlob.objects.count() == 0
        assert storage.object_names() == []

    def test_grace_counts_from_the_first_run_that_saw_the_blob_unused(self, storage):
        store("gone", A, B).delete()
        before = timezone.now()
        first = collect_blobs(grace=3600)
        assert (first.marked, first.rows) == (2, 0)
        stamps = set(FileBlob.objects.values_list("unused_since", flat=True))
        assert len(stamps) == 1 and stamps.pop() >= before
        assert collect_blobs(grace=3600).marked == 0, "a stamp is never moved forward"
        assert len(storage.object_names()) == 2

        FileBlob.objects.update(unused_since=timezone.now() - timedelta(seconds=3601))
        later = collect_blobs(grace=3600)
        assert (later.rows, later.objects) == (2, 2)
        assert FileBlob.objects.count() == 0
        assert storage.object_names() == []

    def test_a_blob_used_again_is_unmarked_and_kept(self, storage):
        store("gone", A, B).delete()
        mark_unused()
        assert FileBlob.objects.filter(unused_since__isnull=False).count() == 2
        again = store("again", A)  # dedupes onto the marked blob
        FileBlob.objects.update(unused_since=timezone.now() - timedelta(days=2))

        report = collect_blobs(grace=3600)

        assert (report.revived, report.rows) == (1, 1)
        assert list(FileBlob.objects.values_list("checksum", "unused_since")) == [
            (blob(A).checksum, None)
        ]
        assert read(again) == A
        assert storage.object_names() == row_paths()

    def test_dry_run_changes_nothing(self, storage):
        keep = store("keep", A)
        store("gone", B, C).delete()
        objects = storage.object_names()

        output = gc("--dry-run", grace=0)

        assert "Would remove 2 blobs" in output
        assert FileBlob.objects.count() == 3
        assert not FileBlob.objects.filter(unused_since__isnull=False).exists()
        assert storage.object_names() == objects
        assert read(keep) == A

    def test_small_batches_remove_everything_due(self, storage):
        store("gone", *(bytes([i]) * BLOB for i in range(10, 17))).delete()
        store("keep", A)
        output = gc("--batch-size", "2", "-v", "2", grace=0)
        assert "Removed 7 blobs" in output
        assert "7 blobs newly marked unused" in output
        assert FileBlob.objects.count() == 1
        assert storage.object_names() == row_paths()

    def test_lost_unused_blob_is_collected_without_its_object(self, storage):
        store("gone", A).delete()
        lost = FileBlob.objects.get()
        storage.remove(lost.path)
        FileBlob.objects.all().mark_lost()
        report = collect_blobs(grace=0)
        assert report.rows == 1 and not report.failed
        assert FileBlob.objects.count() == 0

    def test_path_still_named_by_another_row_is_kept(self, storage):
        store("gone", A).delete()
        path = FileBlob.objects.get().path
        # A second, used row naming the same object (as an import might leave).
        other = FileBlob.objects.create(checksum="e" * 64, path=path, size=BLOB, storage="blobs")
        holder = File.objects.create(name="holder", type="t")
        FileBlobIndex.objects.create(file=holder, blob=other, offset=0)

        report = collect_blobs(grace=0)

        assert (report.rows, report.objects) == (1, 0)
        assert list(FileBlob.objects.values_list("pk", flat=True)) == [other.pk]
        assert storage.object_names() == [path]

    def test_negative_grace_and_bad_batch_size_are_refused(self, storage):
        with pytest.raises(CommandError, match="negative"):
            gc(grace=-1)
        with pytest.raises(CommandError, match="batch size"):
            gc("--batch-size", "0")
        with pytest.raises(GcError):
            collect_orphans(grace=-5)
        with pytest.raises(CommandError, match="unknown database alias"):
            gc("--database", "nowhere")


@pytest.mark.django_db(transaction=True)
class TestLinkedWhileCollecting:
    def test_blob_linked_during_the_delete_is_kept_and_the_rest_go(self, storage):
        """The database's foreign key, not a check in Python, has the last word."""
        store("gone", A, B, C).delete()
        target = blob(B)
        holder = File.objects.create(name="holder", type="t")

        def link(sender: Any, instance: FileBlob, **kwargs: Any) -> None:
            # An upload linking the blob after GC's checks, before its delete.
            if instance.pk == target.pk:
                FileBlobIndex.objects.get_or_create(file=holder, blob=instance, offset=0)

        pre_delete.connect(link, sender=FileBlob)
        try:
            report = collect_blobs(grace=0)
        finally:
            pre_delete.disconnect(link, sender=FileBlob)

        assert (report.rows, report.kept) == (2, 1)
        assert list(FileBlob.objects.values_list("pk", flat=True)) == [target.pk]
        assert storage.object_names() == [target.path]

    def test_refuses_to_run_inside_a_transaction(self, storage):
        """Objects may only go once their rows' deletion has committed."""
        store("gone", A).delete()
        with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
            collect_blobs(grace=0)
        assert FileBlob.objects.count() == 1
        assert len(storage.object_names()) == 1


@pytest.mark.django_db(databases=["default", "files"])
class TestOtherDatabase:
    def test_database_option_collects_there_only(self, storage):
        here = store("here", A)
        here.delete()
        there = File.objects.using("files").create(name="there", type="t")
        there.putfile(io.BytesIO(B + C), blob_size=BLOB)
        File.objects.using("files").filter(pk=there.pk).delete()

        output = gc("--database", "files", grace=0)

        assert "Removed 2 blobs" in output
        assert FileBlob.objects.using("files").count() == 0
        assert FileBlob.objects.count() == 1, "the default database is left alone"
        assert storage.object_names() == row_paths()


class TestOrphans:
    def test_orphan_under_the_prefix_goes_and_foreign_objects_stay(self, storage):
        keep = store("keep", A)
        backend = storages["blobs"]
        orphan = backend.save("chunkfiles/ab/cd/orphan", ContentFile(b"orphan"))
        foreign = backend.save("elsewhere/ab/object", ContentFile(b"not ours"))
        lookalike = backend.save("chunkfiles-other/object", ContentFile(b"not ours either"))
        root_file = backend.save("top-level", ContentFile(b"nor this"))

        output = gc("--orphans", grace=0)

        names = storage.object_names()
        assert orphan not in names
        assert {foreign, lookalike, root_file} <= set(names)
        assert sorted(n for n in names if n.startswith("chunkfiles/")) == row_paths()
        assert read(keep) == A
        assert "and 1 orphan objects" in output

    def test_young_orphans_and_dry_run_are_left_alone(self, storage):
        orphan = storages["blobs"].save("chunkfiles/00/00/young", ContentFile(b"young"))
        report = collect_orphans(grace=3600)
        assert (report.listed, report.young, report.deleted) == (1, 1, 0)
        dry = collect_orphans(grace=0, dry_run=True)
        assert dry.deleted == 1
        assert storage.object_names() == [orphan]

    def test_objects_of_every_storage_rows_use_are_swept(self, storage, tmp_path):
        old = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "old")},
        }
        with override_settings(STORAGES={**settings.STORAGES, "old": old}):
            named = storages["old"].save("chunkfiles/11/11/named", ContentFile(A))
            FileBlob.objects.create(checksum="0" * 64, path=named, size=BLOB, storage="old")
            orphan = storages["old"].save("chunkfiles/22/22/orphan", ContentFile(b"x"))
            report = collect_orphans(grace=0)
            assert report.aliases == ["blobs", "old"]
            assert storages["old"].exists(named)
            assert not storages["old"].exists(orphan)
            assert report.deleted == 1

    def test_prefix_without_a_directory_is_refused(self, storage):
        no_directory = override_settings(CHUNKFILES={"STORAGE": "blobs", "BLOB_PREFIX": "b-"})
        with no_directory, pytest.raises(CommandError, match="BLOB_PREFIX"):
            gc("--orphans", grace=0)

    def test_failed_object_delete_leaves_an_orphan_never_a_dangling_row(self, tmp_path):
        location = str(tmp_path / "blobs")
        setup = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            "blobs": {
                "BACKEND": f"{__name__}.UndeletableStorage",
                "OPTIONS": {"location": location},
            },
        }
        with override_settings(STORAGES=setup, CHUNKFILES={"STORAGE": "blobs"}):
            store("gone", A).delete()
            path = FileBlob.objects.get().path
            with pytest.raises(CommandError, match="problem"):
                gc(grace=0)
            assert FileBlob.objects.count() == 0
            assert os.path.exists(os.path.join(location, path))
            report = collect_orphans(grace=0)
            assert report.failed == [("blobs", path)], "still undeletable, still reported"


class TestHealing:
    def test_lost_object_found_by_a_read_is_rewritten_by_the_next_upload(self, storage):
        old = store("old", A, B)
        lost = blob(B)
        storage.remove(lost.path)
        with pytest.raises(BlobMissingError):
            read(old)
        assert FileBlob.objects.get(pk=lost.pk).lost_at is not None

        new = store("new", B, C)

        healed = FileBlob.objects.get(pk=lost.pk)
        assert healed.lost_at is None and healed.path != lost.path
        assert read(old) == A + B
        assert read(new) == B + C
        assert storage.object_names() == row_paths()

    def test_blob_marked_lost_by_verify_is_not_deduplicated(self, storage):
        old = store("old", A)
        lost = blob(A)
        storage.remove(lost.path)
        FileBlob.objects.filter(pk=lost.pk).mark_lost(path=lost.path)

        new = File.objects.create(name="new", type="t")
        new.putfile(ContentFile(A), blob_size=BLOB)

        assert FileBlob.objects.count() == 1, "the lost row is healed, not duplicated"
        assert read(old) == A and read(new) == A
        assert FileBlob.objects.lost().count() == 0
        assert len(storage.object_names()) == 1
