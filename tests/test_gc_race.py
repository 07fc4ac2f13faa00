"""Garbage collection against concurrent uploads and killed processes.

PostgreSQL and MariaDB only (marker ``race``): SQLite serialises writers,
and the killed process must share the test database with this one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
import traceback
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from chunkfiles.models import File, FileBlob, FileBlobIndex

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

BLOB = 512
THREADS = 8
ROUNDS = 12
#: The shared content: every file is made of a few of these blobs.
POOL = [bytes([i]) * BLOB for i in range(1, 33)]
ROOT = Path(__file__).resolve().parent.parent


def read(pk: int) -> bytes:
    with File.objects.get(pk=pk).getfile(prefetch=True) as fp:
        return bytes(fp.read())


def gc(*args: str) -> int:
    """Run ``chunkfiles_gc --grace 0``; how many blob rows it removed."""
    out = StringIO()
    call_command("chunkfiles_gc", *args, grace=0, stdout=out, stderr=StringIO())
    found = re.search(r"Removed (\d+) blobs", out.getvalue())
    assert found, out.getvalue()
    return int(found.group(1))


def row_paths() -> list[str]:
    return sorted(p for p in FileBlob.objects.values_list("path", flat=True) if p is not None)


class TestCollectWhileUploading:
    def test_uploads_and_deletes_of_shared_content_survive_gc_in_a_loop(self, storage, caplog):
        # The writer logs each time GC removed a blob it deduplicated onto.
        caplog.set_level(logging.INFO, logger="chunkfiles.commit")
        kept: dict[int, bytes] = {}
        errors: list[str] = []

        def churn(seed: int) -> None:
            # Each thread keeps at most one file: every round deletes the last
            # one, so shared blobs keep dropping to unused and being linked again.
            rng = random.Random(seed)
            mine: tuple[int, bytes] | None = None
            try:
                for _ in range(ROUNDS):
                    data = b"".join(rng.choices(POOL, k=rng.randint(2, 4)))
                    f = File.objects.create(name=f"t{seed}", type="t")
                    f.putfile(io.BytesIO(data), blob_size=BLOB, workers=2)
                    if mine is not None:
                        File.objects.filter(pk=mine[0]).delete()
                    mine = (int(f.pk), data)
                if mine is not None:
                    kept[mine[0]] = mine[1]
            except BaseException as exc:  # reported in the test's thread
                errors.append("".join(traceback.format_exception(exc)))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        runs = removed = 0
        try:
            while any(t.is_alive() for t in threads):
                removed += gc()
                runs += 1
        finally:
            for thread in threads:
                thread.join()

        rewrites = sum("rewriting" in r.getMessage() for r in caplog.records)
        assert not errors, f"{rewrites} rewrites; " + "\n".join(errors)
        assert runs >= 2 and removed > 0, (runs, removed)
        print(f"gc runs {runs}, blobs removed {removed}, upload rewrites {rewrites}")
        assert len(kept) == THREADS
        for pk, data in kept.items():
            assert read(pk) == data, f"file {pk} does not read back"
        gc()
        used = set(FileBlobIndex.objects.values_list("blob_id", flat=True))
        assert set(FileBlob.objects.values_list("pk", flat=True)) == used
        assert storage.object_names() == row_paths(), "objects must equal the rows"


#: Runs in a child process: stores an endless, slow stream until it is killed.
CHILD = r"""
import io, json, os, sys, time
import django

config = json.loads(sys.argv[1])
django.setup()
from django.db import connections
from django.test.utils import override_settings

connections["default"].settings_dict["NAME"] = config["database"]
override_settings(STORAGES=config["storages"], CHUNKFILES=config["chunkfiles"]).enable()
from chunkfiles.models import File


class Slow(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):
        time.sleep(0.01)
        buffer[:] = os.urandom(len(buffer))
        return len(buffer)


File.objects.create(name="killed", type="t").putfile(Slow(), blob_size=1024, workers=2)
"""


class TestKilledUpload:
    def test_gc_orphans_removes_what_a_killed_putfile_left(self, storage):
        kept = File.objects.create(name="kept", type="t")
        kept.putfile(io.BytesIO(b"".join(POOL)), blob_size=BLOB, workers=2)
        before = len(storage.object_names())
        config = {
            "database": connection.settings_dict["NAME"],
            "storages": settings.STORAGES,
            "chunkfiles": settings.CHUNKFILES,
        }
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "testproject.settings"}
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(config, default=str)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while len(storage.object_names()) < before + 6:
                assert child.poll() is None, child.communicate()[1].decode()
                assert time.monotonic() < deadline, "the child wrote no objects"
                time.sleep(0.05)
        finally:
            child.kill()  # SIGKILL: no cleanup code of the child runs
            child.communicate()
        assert child.returncode == -9

        leftovers = len(storage.object_names()) - len(row_paths())
        assert leftovers >= 6, "the killed upload should have left unnamed objects"
        gc("--orphans")

        assert storage.object_names() == row_paths()
        assert read(kept.pk) == b"".join(POOL)
        assert File.objects.get(name="killed").blobs.count() == 0
