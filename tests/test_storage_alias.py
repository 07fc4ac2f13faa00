"""Every blob row records its storage, and reads follow the row, not ``CHUNKFILES['STORAGE']``.

Two filesystem storages, ``one`` and ``two``: blobs are written while
``STORAGE`` is ``one``, then the setting moves to ``two``. Anything that read
a blob from the setting instead of its row would now find nothing.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.storage import InvalidStorageError
from django.db import connection
from django.test import override_settings

from chunkfiles.conf import blob_alias, current_storage
from chunkfiles.gc import collect_blobs
from chunkfiles.models import File, FileBlob
from chunkfiles.move import blobs_to_move, move_storage, storage_summary, tally
from chunkfiles.orphans import orphan_aliases
from chunkfiles.stats import store_stats
from chunkfiles.storage import blob_store
from chunkfiles.verify import verify_blobs, verify_files

from .conftest import MODES

pytestmark = pytest.mark.django_db

BLOB = 1024
DATA = b"".join(bytes([n]) * BLOB for n in range(3)) + b"tail"
#: Blobs of DATA.
N = 4

backfill = importlib.import_module("chunkfiles.migrations.0006_fileblob_storage_default")


class Disks:
    """Storages ``one`` and ``two`` under ``root``; ``STORAGE`` is ``one`` until ``switch``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        fs = "django.core.files.storage.FileSystemStorage"
        self.storages = {
            "default": {"BACKEND": fs, "OPTIONS": {"location": str(root / "media")}},
            "one": {"BACKEND": fs, "OPTIONS": {"location": str(root / "one")}},
            "two": {"BACKEND": fs, "OPTIONS": {"location": str(root / "two")}},
        }

    def settings(self, alias: str) -> override_settings:
        return override_settings(STORAGES=self.storages, CHUNKFILES={"STORAGE": alias})

    def objects(self, alias: str) -> set[str]:
        top = self.root / alias
        return {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Disks]:
    setup = Disks(tmp_path)
    with setup.settings("one"):
        yield setup


def put(name: str, data: bytes = DATA) -> File:
    f = File.objects.create(name=name, type="t")
    f.putfile(io.BytesIO(data), blob_size=BLOB)
    return f


def recorded() -> set[str]:
    return set(FileBlob.objects.values_list("storage", flat=True))


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class TestEveryRowRecordsItsStorage:
    def test_putfile(self, disks: Disks) -> None:
        put("a")
        assert recorded() == {"one"}
        with disks.settings("two"):
            put("b", b"other bytes")
        assert FileBlob.objects.get(
            checksum=hashlib.sha256(b"other bytes").hexdigest()
        ).storage == ("two")
        assert recorded() == {"one", "two"}

    def test_from_file_and_from_files(self, disks: Disks) -> None:
        with disks.settings("two"):
            single = FileBlob.from_file(io.BytesIO(b"single"))
            many = FileBlob.from_files([io.BytesIO(b"first"), io.BytesIO(b"second")])
        assert [b.storage for b in (single, *many)] == ["two"] * 3
        assert recorded() == {"two"}
        assert disks.objects("two") == {b.path for b in (single, *many)}

    def test_chunk_upload_and_assemble(self, disks: Disks, tmp_path: Path) -> None:
        with disks.settings("two"):
            chunks = FileBlob.from_files([io.BytesIO(b"chunk 1 "), io.BytesIO(b"chunk 2")])
            f = File.objects.create(name="assembled", type="t")
            f.assemble_from_file_blob_ids(
                [b.pk for b in chunks], sha1(b"chunk 1 chunk 2"), temp_dir=str(tmp_path)
            ).close()
        assert [r.storage for r in f.blob_refs()] == ["two", "two"]

    def test_a_healed_blob_records_where_it_was_written_again(self, disks: Disks) -> None:
        f = put("a")
        lost = FileBlob.objects.order_by("pk").first()
        assert lost is not None and lost.path is not None
        (disks.root / "one" / lost.path).unlink()
        FileBlob.objects.filter(pk=lost.pk).mark_lost()
        with disks.settings("two"):
            put("b")  # same bytes: the lost blob is written again, to 'two'
        lost.refresh_from_db()
        assert (lost.storage, lost.lost_at) == ("two", None)
        assert lost.path in disks.objects("two")
        with File.objects.get(pk=f.pk).getfile() as fh:
            assert fh.read() == DATA

    def test_rows_made_without_naming_a_storage(self, disks: Disks) -> None:
        with disks.settings("two"):
            FileBlob.objects.create(checksum="1" * 64, path="p/1", size=1)
            FileBlob.objects.bulk_create([FileBlob(checksum="2" * 64, path="p/2", size=1)])
            assert FileBlob().storage == "two"
        assert recorded() == {"two"}

    def test_the_field_default_is_the_setting_at_creation(self, disks: Disks) -> None:
        field = FileBlob._meta.get_field("storage")
        assert field.default is current_storage
        assert not field.blank, "a form must not be able to save ''"


@pytest.mark.django_db(transaction=True)
def test_a_moved_blob_records_its_new_storage(disks: Disks) -> None:
    f = put("a")
    assert tally(move_storage("two", delete_source=True))["moved"] == N
    assert recorded() == {"two"}
    assert disks.objects("one") == set()
    with File.objects.get(pk=f.pk).getfile() as fh:
        assert fh.read() == DATA


class TestBackfill:
    def test_empty_rows_get_the_current_setting_and_others_are_kept(self, disks: Disks) -> None:
        put("a")
        with disks.settings("two"):
            kept = FileBlob.from_file(io.BytesIO(b"in two"))
        FileBlob.objects.exclude(pk=kept.pk).update(storage="")
        # The backfill's own function, on the test database's connection.
        backfill.record_storage(apps, types.SimpleNamespace(connection=connection))
        assert sorted(FileBlob.objects.values_list("storage", flat=True)) == ["one"] * N + ["two"]
        assert FileBlob.objects.get(pk=kept.pk).storage == "two"

    def test_it_records_the_setting_it_runs_under(self, disks: Disks) -> None:
        FileBlob.from_file(io.BytesIO(b"legacy"))
        FileBlob.objects.update(storage="")
        with disks.settings("two"):
            backfill.record_storage(apps, types.SimpleNamespace(connection=connection))
        assert recorded() == {"two"}


class TestReadsFollowTheRow:
    """Blobs written to ``one``; ``STORAGE`` now says ``two``, which is empty."""

    @pytest.mark.parametrize("mode", list(MODES))
    def test_file_reads(self, disks: Disks, mode: str) -> None:
        f = put("a")
        with disks.settings("two"):
            with File.objects.get(pk=f.pk).getfile(**MODES[mode]) as fh:
                assert fh.read() == DATA
            assert disks.objects("two") == set()

    def test_blob_reads_save_to_and_verify(self, disks: Disks, tmp_path: Path) -> None:
        f = put("a")
        with disks.settings("two"):
            blob = FileBlob.objects.get(checksum=hashlib.sha256(DATA[:BLOB]).hexdigest())
            assert blob.storage_alias == "one"
            with blob.getfile() as fh:
                assert fh.read() == DATA[:BLOB]
            target = tmp_path / "out" / "a"
            File.objects.get(pk=f.pk).save_to(target)
            assert target.read_bytes() == DATA
            blobs = [c.problems for c in verify_blobs(FileBlob.objects.all(), workers=2)]
            assert blobs == [[]] * N
            files = [c.problems for c in verify_files(File.objects.all(), workers=2)]
            assert files == [[]]

    def test_a_missing_object_is_reported_in_the_storage_of_its_row(self, disks: Disks) -> None:
        put("a")
        blob = FileBlob.objects.order_by("pk").first()
        assert blob is not None and blob.path is not None
        (disks.root / "one" / blob.path).unlink()
        with disks.settings("two"):
            checked = list(verify_blobs(FileBlob.objects.all(), workers=2, dry_run=True))
        [problem] = [p for c in checked for p in c.problems]
        assert (problem.kind, problem.storage, problem.path) == ("missing", "one", blob.path)

    @pytest.mark.django_db(transaction=True)
    def test_gc_deletes_from_the_storage_of_the_row(self, disks: Disks) -> None:
        put("a").delete()
        assert len(disks.objects("one")) == N
        with disks.settings("two"):
            report = collect_blobs(grace=0)
        assert (report.rows, report.objects, report.failed) == (N, N, [])
        assert disks.objects("one") == set()

    def test_summaries_and_filters_name_the_storage_of_the_row(self, disks: Disks) -> None:
        put("a")
        with disks.settings("two"):
            FileBlob.from_file(io.BytesIO(b"in two"))
            assert storage_summary() == [("one", N, len(DATA)), ("two", 1, 6)]
            assert store_stats().storages == {
                "one": {"blobs": N, "bytes": len(DATA)},
                "two": {"blobs": 1, "bytes": 6},
            }
            assert orphan_aliases() == ["one", "two"]
            assert FileBlob.objects.in_storage("one").count() == N
            assert blobs_to_move("two").count() == N
            assert blobs_to_move("one", src="two").count() == 1


class TestRowsWithoutAStorage:
    """Rows other code wrote with storage='': the one safety net reads them from STORAGE."""

    def test_they_count_and_read_as_the_current_storage(self, disks: Disks) -> None:
        f = put("a")
        FileBlob.objects.update(storage="")
        assert blob_alias("") == "one"
        assert {b.storage_alias for b in FileBlob.objects.all()} == {"one"}
        assert storage_summary() == [("one", N, len(DATA))]
        assert FileBlob.objects.aliases() == ["one"]
        assert FileBlob.objects.in_storage("one").count() == N
        assert blobs_to_move("one").count() == 0
        with File.objects.get(pk=f.pk).getfile() as fh:
            assert fh.read() == DATA

    def test_they_add_up_with_rows_naming_it(self, disks: Disks) -> None:
        put("a")
        FileBlob.objects.filter(pk=FileBlob.objects.order_by("pk")[0].pk).update(storage="")
        assert FileBlob.objects.totals_by_storage() == {"one": (N, len(DATA))}

    def test_an_empty_alias_is_no_storage(self, disks: Disks) -> None:
        # Only conf.blob_alias may read '' as a storage; the store refuses it.
        with pytest.raises(InvalidStorageError):
            blob_store("")
        assert blob_store().alias == "one"
