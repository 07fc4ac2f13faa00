"""chunkfiles_move_storage: blobs move between the filesystem and S3 while in use."""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.test import override_settings

from chunkfiles.models import File, FileBlob
from chunkfiles.move import BlobLocation, move_blobs, move_storage, storage_summary, tally
from chunkfiles.storage import blob_store
from tests.processes import start_command
from tests.twostores import BLOB, Stores, content, make_files, read_all, two_storages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    with two_storages(request.getfixturevalue("seaweed"), tmp_path) as setup:
        yield setup


class TestMoveStorage:
    def test_disk_to_s3_and_back_while_reading_and_uploading(self, stores: Stores) -> None:
        files = make_files(12)
        errors: list[BaseException] = []
        stop = threading.Event()
        uploaded: dict[int, bytes] = {}

        def reader() -> None:
            rng = random.Random(1)
            try:
                while not stop.is_set():
                    read_all(dict([rng.choice(list(files.items()))]))
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()  # this thread's connections

        def uploader() -> None:
            # Shares most blobs with the files being moved: dedupe lands on moving rows.
            seed = 100
            try:
                while not stop.is_set():
                    data = content(seed, 6)
                    f = File.objects.create(name=f"u{seed}", type="test")
                    f.putfile(io.BytesIO(data), blob_size=BLOB)
                    uploaded[f.pk] = data
                    seed += 1
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()  # this thread's connections

        threads = [threading.Thread(target=t) for t in (reader, reader, uploader)]
        for thread in threads:
            thread.start()
        try:
            out = io.StringIO()
            call_command(
                "chunkfiles_move_storage", "--to", "bucket", "--delete-source", "--workers", "4",
                stdout=out,
            )  # fmt: skip
            assert "Moved" in out.getvalue()
            # The site switches new uploads to the bucket, then moves what came meanwhile.
            with override_settings(CHUNKFILES={"STORAGE": "bucket"}):
                time.sleep(0.2)
                stop.set()
                for thread in threads:
                    thread.join()
                call_command("chunkfiles_move_storage", "--to", "bucket", "--delete-source")
                assert not errors, errors
                assert uploaded, "the uploader never got to run"
                stores.check_rows()
                assert stores.objects("disk") == set(), "objects left in the source"
                assert [alias for alias, _, _ in storage_summary()] == ["bucket"]
                read_all(files | uploaded)
                call_command("chunkfiles_move_storage", "--to", "disk", "--delete-source")
            stores.check_rows()
            assert stores.objects("bucket") == set()
            read_all(files | uploaded)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def test_killed_midway_and_rerun_loses_nothing(self, stores: Stores) -> None:
        files = {}
        for n in range(40):  # 200 distinct blobs; 2 workers: the move takes a second or two
            f = File.objects.create(name=f"r{n}", type="test")
            files[f.pk] = os.urandom(5 * BLOB)
            f.putfile(io.BytesIO(files[f.pk]), blob_size=BLOB)
        total = FileBlob.objects.count()
        child = start_command(
            "chunkfiles_move_storage", "--to=bucket", "--delete-source", "--workers=2"
        )
        try:
            deadline = time.monotonic() + 60
            while FileBlob.objects.filter(storage="bucket").count() < total // 4:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the move did not get going"
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
            assert child.stdout is not None and child.stderr is not None
            child.stdout.close()
            child.stderr.close()
        moved = FileBlob.objects.filter(storage="bucket").count()
        assert 0 < moved < total, "not killed midway"
        stores.check_rows()
        read_all(files)
        # What a kill leaves: unnamed copies and old objects, at most a window's worth.
        leftovers = len(stores.orphans("bucket")) + len(stores.orphans("disk"))
        assert leftovers <= 2 * 2 + 1
        call_command(
            "chunkfiles_move_storage", "--to=bucket", "--delete-source", stdout=io.StringIO()
        )
        assert FileBlob.objects.filter(storage="bucket").count() == total
        stores.check_rows()
        assert stores.objects("disk") == stores.orphans("disk")
        read_all(files)

    def test_rerun_moves_nothing_and_from_filters(self, stores: Stores) -> None:
        make_files(3)
        assert tally(move_storage("disk", src="bucket"))["moved"] == 0  # nothing there yet
        # Rows from before blobs recorded their storage: '' is CHUNKFILES['STORAGE'].
        FileBlob.objects.update(storage="")
        first = tally(move_storage("bucket", src="disk", workers=2))
        assert first["moved"] == FileBlob.objects.count() > 0
        assert first["bytes"] == sum(FileBlob.objects.values_list("size", flat=True))
        assert first["source_deleted"] == 0
        copies = stores.objects("bucket")
        assert tally(move_storage("bucket")) == tally([])
        assert stores.objects("bucket") == copies
        # Without --delete-source the old objects stay, unnamed.
        assert stores.objects("disk") == stores.orphans("disk") != set()

    def test_summary_counts_blobs_and_bytes_per_storage(self, stores: Stores) -> None:
        make_files(2, blobs=3)
        blobs = FileBlob.objects.count()
        nbytes = sum(FileBlob.objects.values_list("size", flat=True))
        assert storage_summary() == [("disk", blobs, nbytes)]
        one = FileBlob.objects.order_by("pk").first()
        assert one is not None
        tally(move_storage("bucket", blob_ids=[one.pk]))
        assert storage_summary() == [
            ("bucket", 1, one.size),
            ("disk", blobs - 1, nbytes - (one.size or 0)),
        ]
        # Rows from before blobs recorded their storage count under CHUNKFILES['STORAGE'].
        FileBlob.objects.filter(storage="disk").update(storage="")
        assert storage_summary()[1] == ("disk", blobs - 1, nbytes - (one.size or 0))

    def test_row_changed_meanwhile_keeps_no_copy(self, stores: Stores) -> None:
        make_files(1, blobs=2)
        blob = FileBlob.objects.order_by("pk").first()
        assert blob is not None and blob.path is not None
        stale = BlobLocation(blob.pk, blob.path, "disk", blob.size or 0, blob.checksum)
        # The blob is healed under a new name after the mover loaded it.
        store = blob_store("disk")
        data = store.get(blob.path)
        renamed = store.put("chunkfiles/healed", data, blob.checksum)
        FileBlob.objects.filter(pk=blob.pk).update(path=renamed)
        [outcome] = move_blobs([stale], "bucket", delete_source=True)
        assert outcome.status == "changed"
        assert stores.objects("bucket") == set()
        assert blob.path in stores.objects("disk"), "deleted an object the mover did not move"
        # Its row removed by garbage collection meanwhile: the same.
        [outcome] = move_blobs([stale._replace(pk=blob.pk + 10_000)], "bucket")
        assert outcome.status == "changed"
        assert stores.objects("bucket") == set()

    def test_missing_and_corrupt_sources_are_reported(self, stores: Stores) -> None:
        f = File.objects.create(name="three", type="test")
        f.putfile(io.BytesIO(b"a" * BLOB + b"b" * BLOB + b"c"), blob_size=BLOB)
        first, second, third = FileBlob.objects.order_by("pk")
        assert first.path and second.path
        stores.by_alias["disk"].remove(first.path)
        stores.by_alias["disk"].corrupt(second.path, b"x" * (second.size or 0))
        err = io.StringIO()
        with pytest.raises(CommandError, match="2 problem"):
            call_command(
                "chunkfiles_move_storage", "--to", "bucket", stdout=io.StringIO(), stderr=err
            )
        assert f"blob {first.pk} missing" in err.getvalue()
        assert f"blob {second.pk} corrupt" in err.getvalue()
        first.refresh_from_db()
        second.refresh_from_db()
        third.refresh_from_db()
        assert first.lost_at is not None, "a missing object marks its blob lost"
        assert (second.storage, second.lost_at) == ("disk", None)
        assert third.storage == "bucket"
        assert len(stores.objects("bucket")) == 1

    def test_bad_arguments(self, stores: Stores) -> None:
        with pytest.raises(CommandError, match="unknown storage alias 'nope'"):
            call_command("chunkfiles_move_storage", "--to", "nope")
        with pytest.raises(CommandError, match="both 'disk'"):
            call_command("chunkfiles_move_storage", "--to", "disk", "--from", "disk")
        with pytest.raises(CommandError, match="workers"):
            call_command("chunkfiles_move_storage", "--to", "bucket", "--workers", "0")

    def test_refuses_to_run_inside_a_transaction(self, stores: Stores) -> None:
        # A rollback after the old object was deleted would leave the row naming it.
        make_files(1, blobs=2)
        with transaction.atomic(), pytest.raises(RuntimeError, match="outside transaction"):
            list(move_storage("bucket", delete_source=True))
        assert stores.objects("bucket") == set()
