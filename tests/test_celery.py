"""Bulk jobs fanned out to real Celery worker processes (Redis and RabbitMQ on loopback)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import Sum

from chunkfiles.dispatch import combine, dispatch, pk_batches
from chunkfiles.importing import walk
from chunkfiles.models import File, FileBlob
from chunkfiles.move import blobs_to_move
from chunkfiles.safenames import safe_relpath
from chunkfiles.tasks import checked_summary
from chunkfiles.verify import verify_files
from testproject.bulkfiles import BLOB, bulk_files
from tests.celeryworkers import RABBITMQ, REDIS, Workers
from tests.processes import ROOT
from tests.twostores import Stores, make_files, read_all, two_storages

pytestmark = pytest.mark.django_db(transaction=True)

FILES = 2000


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    with two_storages(request.getfixturevalue("seaweed"), tmp_path) as setup:
        yield setup


@pytest.fixture
def two_workers(stores: Stores, tmp_path: Path) -> Iterator[Workers]:
    with Workers(REDIS, 2, tmp_path) as workers:
        yield workers


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def batches(ids: list[int], size: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), size):
        yield {"file_ids": ids[start : start + size], **kwargs}


class TestCeleryFanOut:
    def test_export_and_verify_match_the_single_process_run(
        self, two_workers: Workers, stores: Stores, tmp_path: Path
    ) -> None:
        files = bulk_files(FILES)
        ids = sorted(files)
        # Export everything, once here and once through the workers to the bucket.
        manifest = tmp_path / "manifest.jsonl"
        call_command(
            "chunkfiles_export", "--all", "--output", str(tmp_path / "out"), "--parents",
            "--manifest", str(manifest), stdout=io.StringIO(),
        )  # fmt: skip
        result = dispatch(
            "chunkfiles.export_files", batches(ids, 150, alias="bucket", prefix="export/")
        )
        assert result["errors"] == [] and result["problems"] == []
        assert (result["written"], result["bytes"]) == (FILES, 2 * BLOB * FILES)
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert len(lines) == FILES
        # One listing instead of 2000 GETs: a single-part upload's ETag is its MD5.
        etags = stores.etags("export/")
        for line in lines:
            local = (tmp_path / "out" / line["path"]).read_bytes()
            assert local == files[line["id"]]
            name = f"export/{line['id']}/{safe_relpath(line['name'], 'file')}"
            assert etags[name] == hashlib.md5(local).hexdigest(), name
        # Done again (a redelivered batch): everything is skipped, nothing rewritten.
        again = dispatch(
            "chunkfiles.export_files", batches(ids[:300], 150, alias="bucket", prefix="export/")
        )
        assert (again["skipped"], again["written"]) == (300, 0)
        # The command, once in this process and once with --celery: the same objects
        # and the same summary but for the batch count.
        summaries = []
        for prefix, celery in (("here", []), ("there", ["--celery", "--batch-size", "400"])):
            out, err = io.StringIO(), Terminal()
            call_command(
                "chunkfiles_export", "--all", "--storage", "bucket", "--prefix", prefix,
                *celery, stdout=out, stderr=err,
            )  # fmt: skip
            # On a terminal: a bar of bytes here, a bar of finished batches there.
            if celery:
                assert "batches: 100%" in err.getvalue() and "5/5 [" in err.getvalue(), err
            else:
                assert "3.91M/3.91M" in err.getvalue(), err.getvalue()
            summaries.append(out.getvalue().split(" in 5 batches")[0].replace(prefix, "P"))
            written = {k.split("/", 1)[1]: v for k, v in stores.etags(f"{prefix}/").items()}
            assert written == {k.split("/", 1)[1]: v for k, v in etags.items()}
        assert summaries[0].startswith(f"Exported {FILES} file(s), 3.9\xa0MB, to storage")
        assert summaries[0].rstrip(".\n") == summaries[1].rstrip(",.\n)") + ")"

        # Verify, with one blob object gone and one damaged.
        broken = FileBlob.objects.order_by("pk")[:2]
        stores.by_alias["disk"].remove(str(broken[0].path))
        stores.by_alias["disk"].corrupt(str(broken[1].path), b"x" * BLOB)
        here = checked_summary(verify_files(File.objects.all(), dry_run=True))
        there = dispatch("chunkfiles.verify_files", batches(ids, 100, dry_run=True))
        # The single-process command reports the same problem lines.
        err = io.StringIO()
        with pytest.raises(CommandError, match="problem"):
            call_command(
                "chunkfiles_verify", "--files", "--dry-run", stdout=io.StringIO(), stderr=err
            )
        assert sorted(err.getvalue().splitlines()) == sorted(there["problems"])
        # And the command's --celery: the same lines and the same summary.
        out, celery_err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError, match="problem"):
            call_command(
                "chunkfiles_verify", "--files", "--dry-run", "--celery", "--batch-size=300",
                stdout=out, stderr=celery_err,
            )  # fmt: skip
        assert sorted(celery_err.getvalue().splitlines()) == sorted(there["problems"])
        assert f"Verified {FILES} file(s)" in out.getvalue()
        assert there["batches"] == FILES // 100 and there["errors"] == []
        assert here["problems"], "the damaged blobs must show"
        for key in ("checked", "bytes", "bad", "lost", "recovered"):
            assert there[key] == here[key], key
        assert sorted(there["problems"]) == sorted(here["problems"])
        # Both workers took batches.
        stats = two_workers.app.control.inspect(two_workers.names, timeout=2).stats() or {}
        assert sorted(stats) == sorted(two_workers.names)
        assert all(s["total"].get("chunkfiles.verify_files") for s in stats.values()), stats

    def test_worker_killed_mid_batch_and_the_move_still_completes(
        self, stores: Stores, tmp_path: Path
    ) -> None:
        files = bulk_files(200, distinct=240)
        total = FileBlob.objects.count()
        # The victim's disk stops answering at its third read: it is stuck in
        # its first batch, two blobs in, whenever it is killed (never between
        # batches, never with its batch done), so the kill is always mid-batch.
        stalling = copy.deepcopy(settings.STORAGES)
        stalling["disk"]["BACKEND"] = "testproject.faults.FlakyFileSystemStorage"
        stalling["disk"]["OPTIONS"].update(stall_from_call=3, stall_seconds=120)
        with Workers(REDIS, 2, tmp_path, storages={0: stalling}) as workers:
            victim, survivor = workers.names
            killed: list[str] = []  # the ids of the batches the victim was running

            def kill_once(result: dict[str, Any]) -> None:
                if not killed:
                    running = workers.running(victim)
                    if running:
                        workers.kill(victim)
                        killed.extend(running)

            work = (
                {"blob_ids": ids, "dst": "bucket", "workers": 1, "delete_source": True}
                for ids in pk_batches(blobs_to_move("bucket"), 8)
            )
            result = dispatch("chunkfiles.move_blobs", work, progress=kill_once, timeout=180)
            assert killed, "the victim was never seen running a batch"
            assert "succeeded" not in workers.log(victim, tail=0)
            done_again = workers.log(survivor, tail=0)
            assert all(f"[{task_id}] succeeded" in done_again for task_id in killed), killed
            assert result["batches"] == -(-total // 8) and result["errors"] == []
            assert result["problems"] == []
            assert FileBlob.objects.filter(storage="bucket").count() == total
            stores.check_rows()
            read_all(files)
            # The killed batch left at most its unnamed copies and undeleted old objects.
            assert len(stores.orphans("bucket")) + len(stores.orphans("disk")) <= 8

            # And back, through the command's --celery, on the surviving worker.
            out = io.StringIO()
            call_command(
                "chunkfiles_move_storage", "--to", "disk", "--celery", "--batch-size", "50",
                "--delete-source", stdout=out,
            )  # fmt: skip
            # (A batch retried after a database error counts only what it moved itself.)
            assert out.getvalue().startswith("Moved ") and "0 failed" in out.getvalue()
            assert FileBlob.objects.filter(storage="disk").count() == total
            stores.check_rows()
            assert stores.objects("bucket") == stores.orphans("bucket")
            read_all(files)

    def test_import_and_gc_sweep_tasks(
        self, two_workers: Workers, stores: Stores, tmp_path: Path
    ) -> None:
        source = tmp_path / "src"
        contents = {f"d{i % 3}/f{i}.txt": os.urandom(BLOB * (i % 4)) for i in range(30)}
        contents["same/as-f1.txt"] = contents["d1/f1.txt"]
        for name, data in contents.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        pairs = [[found.path, found.name] for found in walk([str(source)])]
        work = [{"files": pairs[i : i + 7], "type": "upload"} for i in range(0, len(pairs), 7)]
        result = dispatch("chunkfiles.import_files", work)
        assert result["errors"] == [] and result["problems"] == []
        # A batch retried after a database error (SQLite: "database is locked"
        # between worker processes) finds what its first attempt stored.
        assert result["files"] + result["already"] == 31
        assert File.objects.count() == 31
        assert File.objects.aggregate(n=Sum("size"))["n"] == sum(map(len, contents.values()))
        # Done again (redelivered batches): nothing is stored twice.
        again = dispatch("chunkfiles.import_files", work)
        assert (again["files"], again["already"]) == (0, 31)
        assert File.objects.count() == 31
        for f in File.objects.all():
            with f.getfile() as fh:
                assert fh.read() == contents[f.name]

        out = io.StringIO()
        call_command(
            "chunkfiles_import", str(source), "--type=upload", "--celery", "--batch-size=5",
            stdout=out,
        )  # fmt: skip
        assert out.getvalue().startswith("Imported 0 file(s), 0\xa0bytes")
        assert "31 stored already" in out.getvalue()

        File.objects.all().delete()
        blobs = FileBlob.objects.count()
        out = io.StringIO()
        call_command("chunkfiles_gc", "--grace=0", "--orphans", "--celery", stdout=out)
        assert f"Removed {blobs} blobs" in out.getvalue()
        assert not FileBlob.objects.exists()
        assert stores.objects("disk") == set()

    def test_rabbitmq_as_the_broker(self, stores: Stores, tmp_path: Path) -> None:
        files = bulk_files(300, distinct=50)
        ids = sorted(files)
        with Workers(RABBITMQ, 1, tmp_path):
            there = dispatch("chunkfiles.verify_files", batches(ids, 40, dry_run=True))
        here = checked_summary(verify_files(File.objects.all(), dry_run=True))
        assert there["batches"] == 8 and there["errors"] == []
        assert (there["checked"], there["bytes"], there["problems"]) == (300, 300 * 2 * BLOB, [])
        assert (here["checked"], here["bytes"]) == (there["checked"], there["bytes"])


class TestBrokerDown:
    def test_command_says_so_in_one_line(self, stores: Stores) -> None:
        from celery import Celery
        from celery._state import get_current_app

        make_files(1, blobs=1)
        previous = get_current_app()
        down = Celery("down", broker="redis://127.0.0.1:1/0", backend=REDIS, set_as_current=True)
        try:
            with pytest.raises(CommandError, match=r"^cannot send chunkfiles.move_blobs to redis"):
                call_command("chunkfiles_move_storage", "--to", "bucket", "--celery")
        finally:
            down.close()
            previous.set_current()
        assert not FileBlob.objects.filter(storage="bucket").exists()


class TestWithoutCelery:
    def test_nothing_imports_celery(self) -> None:
        script = (
            "import sys, django; django.setup()\n"
            "from django.core.management import call_command, load_command_class\n"
            "import chunkfiles.move, chunkfiles.dispatch, chunkfiles.exportstore\n"
            "for name in ('chunkfiles_move_storage', 'chunkfiles_export'):\n"
            "    load_command_class('chunkfiles', name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu'))\n"
            "assert not bad, bad\n"
        )
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings"}
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)

    def test_combine_sums_numbers_and_joins_lists(self) -> None:
        total: dict[str, Any] = {}
        combine(total, {"moved": 2, "bytes": 10, "problems": ["a"], "kind": "x"})
        combine(total, {"moved": 1, "bytes": 5, "problems": ["b"], "kind": "y", "ok": True})
        assert total == {"moved": 3, "bytes": 15, "problems": ["a", "b"], "kind": "x", "ok": True}
