"""``chunkfiles_import_sentry`` against a Sentry file store written the way Sentry writes it.

Sentry's three tables are created with Sentry's own column types in a
separate PostgreSQL database (Sentry's database is PostgreSQL, so these tests
run in the PostgreSQL matrix), and the blobs are stored under Sentry's
``FileBlob.generate_unique_path()`` names in a filestore on the filesystem or
on SeaweedFS S3.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import override_settings

from chunkfiles.exceptions import FileNotStoredError
from chunkfiles.models import File, FileBlob, SentryImport
from chunkfiles.sentry import Filters, SentryTables, structure_problem
from chunkfiles.sentry_import import SentryImporter

from .conftest import StorageSetup, s3_options

ALIAS = "sentry"
pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(databases=["default", ALIAS])]

#: The tables as Sentry's migrations create them on PostgreSQL: bigserial ids
#: (BoundedBigAutoField), bigint foreign keys (FlexibleForeignKey), 32-bit
#: sizes and offsets (WrappingU32IntegerField, BoundedPositiveIntegerField)
#: and the headers as text (LegacyTextJSONField). ``blob_id``/``path`` on
#: sentry_file are Sentry's legacy columns, still present.
SENTRY_DDL = """
CREATE TABLE sentry_fileblob (
    id bigserial PRIMARY KEY,
    path text NULL,
    size integer NULL CHECK (size >= 0),
    checksum varchar(40) NOT NULL UNIQUE,
    timestamp timestamp with time zone NOT NULL
);
CREATE INDEX sentry_fileblob_timestamp ON sentry_fileblob (timestamp);
CREATE TABLE sentry_file (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    type varchar(64) NOT NULL,
    timestamp timestamp with time zone NOT NULL,
    headers text NOT NULL,
    size integer NULL,
    checksum varchar(40) NULL,
    blob_id bigint NULL REFERENCES sentry_fileblob (id) DEFERRABLE INITIALLY DEFERRED,
    path text NULL
);
CREATE INDEX sentry_file_timestamp ON sentry_file (timestamp);
CREATE INDEX sentry_file_checksum ON sentry_file (checksum);
CREATE TABLE sentry_fileblobindex (
    id bigserial PRIMARY KEY,
    "offset" integer NOT NULL,
    file_id bigint NOT NULL REFERENCES sentry_file (id) DEFERRABLE INITIALLY DEFERRED,
    blob_id bigint NOT NULL REFERENCES sentry_fileblob (id) DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (file_id, blob_id, "offset")
);
"""

OLD = datetime(2024, 3, 1, 12, 0, tzinfo=dt_timezone.utc)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def wrap(value: int) -> int:
    """How Sentry's WrappingU32IntegerField stores a value in a signed column."""
    return value - 2**32 if value > 2**31 - 1 else value


def _server() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    return {
        "host": db["HOST"],
        "port": int(db["PORT"] or 5432),
        "user": db["USER"],
        "password": db.get("PASSWORD") or None,
    }


@pytest.fixture(scope="module")
def sentry_database(django_db_setup: None) -> Iterator[str]:
    """A separate PostgreSQL database holding Sentry's tables, as alias ``sentry``.

    Registered after the test databases are set up, so Django leaves it alone.
    """
    name = "chunkfiles_sentry_src" + os.environ.get("CHUNKFILES_TEST_DB_SUFFIX", "")
    with psycopg.connect(dbname="postgres", autocommit=True, **_server()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dbname=name, autocommit=True, **_server()) as conn:
        conn.execute(SENTRY_DDL)
    connections.settings[ALIAS] = {**connections.settings["default"], "NAME": name}
    try:
        yield name
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        del connections.settings[ALIAS]
        with psycopg.connect(dbname="postgres", autocommit=True, **_server()) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SentryStore:
    """Writes files as Sentry's ``File.putfile`` does.

    Blobs are deduplicated by SHA-1 (Sentry's ``FileBlob.checksum``), stored
    under ``generate_unique_path()`` names, and sizes and offsets of 2 GiB
    and more are wrapped into the signed 32-bit columns.
    """

    def __init__(self, conn: psycopg.Connection[Any], filestore: Storage, kind: str) -> None:
        self.conn = conn
        self.filestore = filestore
        self.kind = kind

    def blob(self, data: bytes) -> int:
        row = self.conn.execute(
            "SELECT id FROM sentry_fileblob WHERE checksum = %s", (sha1(data),)
        ).fetchone()
        if row:
            return int(row[0])
        token = uuid.uuid4().hex
        path = f"{token[:2]}/{token[2:6]}/{token[6:]}"  # FileBlob.generate_unique_path()
        self.filestore.save(path, ContentFile(data))
        return int(
            self.conn.execute(
                "INSERT INTO sentry_fileblob (path, size, checksum, timestamp) "
                "VALUES (%s, %s, %s, now()) RETURNING id",
                (path, len(data), sha1(data)),
            ).fetchone()[0]
        )

    def put(
        self,
        data: bytes,
        name: str = "file.bin",
        *,
        type: str = "release.file",
        headers: Any = None,
        blob_size: int = 1024,
        timestamp: datetime = OLD,
    ) -> int:
        text = headers if isinstance(headers, str) else json.dumps(headers or {})
        file_id = int(
            self.conn.execute(
                "INSERT INTO sentry_file (name, type, timestamp, headers, size, checksum) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (name, type, timestamp, text, wrap(len(data)), sha1(data)),
            ).fetchone()[0]
        )
        for offset in range(0, len(data), blob_size):
            self.link(file_id, self.blob(data[offset : offset + blob_size]), offset)
        return file_id

    def link(self, file_id: int, blob_id: int, offset: int) -> None:
        self.conn.execute(
            'INSERT INTO sentry_fileblobindex (file_id, blob_id, "offset") VALUES (%s, %s, %s)',
            (file_id, blob_id, wrap(offset)),
        )

    def blob_path(self, file_id: int, offset: int) -> str:
        return str(
            self.conn.execute(
                "SELECT b.path FROM sentry_fileblobindex i JOIN sentry_fileblob b "
                'ON b.id = i.blob_id WHERE i.file_id = %s AND i."offset" = %s',
                (file_id, wrap(offset)),
            ).fetchone()[0]
        )

    def overwrite(self, path: str, data: bytes) -> None:
        self.filestore.delete(path)
        self.filestore.save(path, ContentFile(data))


@pytest.fixture(params=["fs", "s3"])
def source(
    request: pytest.FixtureRequest, storage: StorageSetup, tmp_path: Path, sentry_database: str
) -> Iterator[SentryStore]:
    """Sentry's filestore as STORAGES alias ``sentry`` (a directory or a bucket prefix)."""
    if request.param == "fs":
        backend = "django.core.files.storage.FileSystemStorage"
        options: dict[str, Any] = {"location": str(tmp_path / "sentry-files")}
    else:
        backend = "storages.backends.s3.S3Storage"
        options = s3_options(request.getfixturevalue("seaweed"), f"sentry-{uuid.uuid4().hex[:8]}")
    alias = {"BACKEND": backend, "OPTIONS": options}
    with (
        override_settings(STORAGES={**settings.STORAGES, ALIAS: alias}),
        psycopg.connect(dbname=sentry_database, autocommit=True, **_server()) as conn,
    ):
        conn.execute("TRUNCATE sentry_fileblobindex, sentry_file, sentry_fileblob RESTART IDENTITY")
        yield SentryStore(conn, storages[ALIAS], request.param)


def on_filesystem(test: Any) -> Any:
    """Run ``test`` with both the Sentry filestore and the blob storage on the filesystem."""
    test = pytest.mark.parametrize("storage", ["fs"], indirect=True)(test)
    return pytest.mark.parametrize("source", ["fs"], indirect=True)(test)


def run_import(*args: str) -> tuple[int, str, str]:
    """Run the command; its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(
            "chunkfiles_import_sentry", "--database", ALIAS, "--storage", ALIAS, *args,
            stdout=out, stderr=err,
        )  # fmt: skip
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def imported(sentry_file_id: int) -> File:
    return SentryImport.objects.select_related("file").get(sentry_file_id=sentry_file_id).file


def content(file: File) -> bytes:
    with file.getfile() as fp:
        return bytes(fp.read())


def test_import_keeps_good_files_byte_for_byte_and_reports_broken_ones(storage, source, collisions):
    payload = os.urandom(2500)
    multi = source.put(
        payload, "bundle.zip", headers={"Content-Type": "application/zip"}, type="artifact.bundle"
    )
    shared = source.put(payload[:2048] + b"tail", "shares-two-blobs.bin")
    empty = source.put(b"", "empty.txt")
    missing = source.put(os.urandom(1500), "missing.bin")
    source.filestore.delete(source.blob_path(missing, 1024))
    corrupt = source.put(os.urandom(700), "corrupt.bin")
    source.overwrite(source.blob_path(corrupt, 0), os.urandom(700))
    half_one = (collisions / "sha-mbles-1.bin").read_bytes()
    half_two = (collisions / "sha-mbles-2.bin").read_bytes()
    assert sha1(half_one) == sha1(half_two) and half_one != half_two
    colliding = source.put(half_one, "sha-mbles-1.bin")
    ours = File.objects.create(name="sha-mbles-2.bin", type="default")
    ours.putfile(io.BytesIO(half_two))
    assert FileBlob.objects.count() == 1

    status, out, err = run_import()

    assert status == 1
    assert "Imported 4 of 6 Sentry file(s)" in out and "2 broken" in out
    assert f"Sentry file {missing} ('missing.bin') at offset 1024" in err
    assert "missing from the Sentry filestore" in err
    assert f"Sentry file {corrupt} ('corrupt.bin') at offset 0" in err
    assert "bytes hash to SHA-1" in err
    assert not SentryImport.objects.filter(sentry_file_id__in=[missing, corrupt]).exists()
    # Imported blobs record the storage they were written to, as uploads do.
    assert set(FileBlob.objects.values_list("storage", flat=True)) == {storage.alias}

    bundle = imported(multi)
    assert content(bundle) == payload
    assert (bundle.name, bundle.type, bundle.headers, bundle.timestamp) == (
        "bundle.zip", "artifact.bundle", {"Content-Type": "application/zip"}, OLD,
    )  # fmt: skip
    assert (bundle.size, bundle.checksum) == (2500, sha1(payload))
    assert [r.offset for r in bundle.blob_refs()] == [0, 1024, 2048]
    assert content(imported(shared)) == payload[:2048] + b"tail"
    # Sentry's shared blobs stay shared: the first two blobs are the same rows.
    assert [r.blob_id for r in imported(shared).blob_refs()][:2] == [
        r.blob_id for r in bundle.blob_refs()
    ][:2]
    nothing = imported(empty)
    assert (content(nothing), nothing.size, nothing.checksum) == (b"", 0, sha1(b""))
    # The two halves share a SHA-1 but never a blob.
    assert content(imported(colliding)) == half_one
    assert content(File.objects.get(pk=ours.pk)) == half_two
    assert imported(colliding).blob_refs()[0].blob_id != ours.blob_refs()[0].blob_id

    files, blobs, objects = File.objects.count(), FileBlob.objects.count(), storage.object_names()
    status, out, err = run_import()
    assert status == 1
    assert "Imported 0 of 6 Sentry file(s)" in out and "4 imported before, 2 broken" in out
    assert (File.objects.count(), FileBlob.objects.count()) == (files, blobs)
    assert storage.object_names() == objects


@on_filesystem
def test_an_interrupted_import_resumes_without_importing_twice(storage, source):
    datas = [os.urandom(3000 + n) for n in range(3)]
    ids = [source.put(d, f"f{n}.bin") for n, d in enumerate(datas)]
    calls = 0

    def interrupt(nbytes: int) -> None:
        nonlocal calls
        calls += 1
        if importer.report.imported == 1:
            raise KeyboardInterrupt

    importer = SentryImporter(ALIAS, ALIAS, workers=4, window_bytes=1024, on_progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        importer.run()
    assert SentryImport.objects.count() == 1

    report = SentryImporter(ALIAS, ALIAS, workers=4).run()
    assert (report.imported, report.skipped, report.problems) == (2, 1, [])
    assert SentryImport.objects.count() == File.objects.count() == 3
    assert [content(imported(i)) for i in ids] == datas


@on_filesystem
def test_filters_pick_by_id_type_and_since(storage, source):
    recent = OLD + timedelta(days=30)
    a = source.put(b"a" * 10, "a", type="release.file")
    b = source.put(b"b" * 10, "b", type="artifact.bundle")
    c = source.put(b"c" * 10, "c", type="artifact.bundle", timestamp=recent)
    d = source.put(b"d" * 10, "d", type="release.file", timestamp=recent)

    status, out, _ = run_import("--id", str(b), "-v", "2")
    assert status == 0
    assert f"imported Sentry file {b} ('b') as file {imported(b).pk}" in out
    assert set(SentryImport.objects.values_list("sentry_file_id", flat=True)) == {b}
    assert run_import("--type", "artifact.bundle", "--since", "2024-03-15")[0] == 0
    assert set(SentryImport.objects.values_list("sentry_file_id", flat=True)) == {b, c}
    status, out, _ = run_import("--since", recent.isoformat())
    assert status == 0 and "Imported 1 of 2" in out and "1 imported before" in out
    assert run_import()[0] == 0
    assert set(SentryImport.objects.values_list("sentry_file_id", flat=True)) == {a, b, c, d}


@on_filesystem
def test_headers_text_is_read_as_json(storage, source):
    loose = source.put(b"x", "loose", headers='{"Content-Type": "text/plain", "X-Count": 3}')
    blank = source.put(b"y", "blank", headers="")
    broken = source.put(b"z", "broken", headers="[1, 2]")
    injecting = source.put(b"w", "injecting", headers={"X-A": "1\r\nSet-Cookie: s=1"})
    status, _, err = run_import()
    assert status == 1
    assert f"Sentry file {injecting} ('injecting'): headers: header 'X-A' contains a line" in err
    assert imported(loose).headers == {"Content-Type": "text/plain", "X-Count": "3"}
    assert imported(blank).headers == {}
    assert f"Sentry file {broken} ('broken'): headers: headers are JSON list" in err


@on_filesystem
def test_inconsistent_sentry_rows_are_reported_not_imported(storage, source):
    gap = source.put(os.urandom(2048), "gap.bin")
    source.conn.execute(
        'UPDATE sentry_fileblobindex SET "offset" = 1500 WHERE file_id = %s AND "offset" = 1024',
        (gap,),
    )
    wrong = source.put(os.urandom(100), "wrong-sum.bin")
    source.conn.execute("UPDATE sentry_file SET checksum = %s WHERE id = %s", ("0" * 40, wrong))
    short = source.put(os.urandom(100), "short.bin")
    source.conn.execute("UPDATE sentry_file SET size = 99 WHERE id = %s", (short,))
    status, _, err = run_import()
    assert status == 1
    assert f"Sentry file {gap} ('gap.bin') at offset 1500" in err
    assert "expected 1024" in err
    assert f"Sentry file {wrong} ('wrong-sum.bin'): its blobs hash to SHA-1" in err
    assert f"Sentry file {short} ('short.bin'): its blobs add up to 100 bytes" in err
    assert not SentryImport.objects.exists() and not File.objects.exists()


@on_filesystem
def test_32_bit_sizes_and_offsets_are_unwrapped(storage, source):
    gib = 2**30
    blob = source.blob(b"stand-in")
    source.conn.execute("UPDATE sentry_fileblob SET size = %s WHERE id = %s", (gib, blob))
    tail = source.blob(b"tail")
    file_id = int(
        source.conn.execute(
            "INSERT INTO sentry_file (name, type, timestamp, headers, size, checksum) "
            "VALUES ('big', 'dif', now(), '{}', %s, NULL) RETURNING id",
            (wrap(3 * gib + 4),),
        ).fetchone()[0]
    )
    for offset in (0, gib, 2 * gib):
        source.link(file_id, blob, offset)
    source.link(file_id, tail, 3 * gib)
    assert source.conn.execute("SELECT size FROM sentry_file").fetchone()[0] < 0

    tables = SentryTables(ALIAS)
    (page,) = tables.files(Filters())
    assert page[0].size == 3 * gib + 4
    refs = tables.blobs([file_id])[file_id]
    assert [r.offset for r in refs] == [0, gib, 2 * gib, 3 * gib]
    assert structure_problem(page[0], refs) is None
    assert tables.totals(Filters()) == (1, 3 * gib + 4)


@on_filesystem
def test_command_refuses_unknown_aliases_and_a_database_without_sentry(storage, source):
    for args, message in [
        (["--database", "nope", "--storage", ALIAS], "unknown database alias 'nope'"),
        (["--database", ALIAS, "--storage", "nope"], "unknown storage alias 'nope'"),
        (["--database", "default", "--storage", ALIAS], "cannot read Sentry's tables"),
        (
            ["--database", ALIAS, "--storage", ALIAS, "--id", "404"],
            r"no Sentry file with id\(s\) 404",
        ),
        (["--database", ALIAS, "--storage", ALIAS, "--since", "yesterday"], "--since must be"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("chunkfiles_import_sentry", *args, stdout=io.StringIO())


@on_filesystem
def test_a_blob_lost_before_linking_fails_only_its_file_and_heals_on_rerun(storage, source):
    doomed, fine = os.urandom(500), os.urandom(600)
    doomed_id, fine_id = source.put(doomed, "doomed.bin"), source.put(fine, "fine.bin")
    doomed_checksum = hashlib.sha256(doomed).hexdigest()

    def collect(nbytes: int) -> None:
        # As garbage collection does when it finds an object gone, after the
        # blob was stored and before the file is linked to it.
        FileBlob.objects.filter(checksum=doomed_checksum).mark_lost()

    importer = SentryImporter(ALIAS, ALIAS, on_progress=collect)
    report = importer.run()
    assert report.imported == 1
    (problem,) = report.problems
    assert (problem.sentry_file_id, problem.offset) == (doomed_id, 0)
    assert "run the import again" in problem.reason
    assert content(imported(fine_id)) == fine

    report = SentryImporter(ALIAS, ALIAS).run()
    assert (report.imported, report.skipped, report.problems) == (1, 1, [])
    assert content(imported(doomed_id)) == doomed
    assert FileBlob.objects.get(checksum=doomed_checksum).lost_at is None


class SlowFilestore(FileSystemStorage):
    """A filestore whose reads take 50 ms and which records how many overlap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lock = threading.Lock()
        self.active = self.most = 0

    def open(self, name: str, mode: str = "rb") -> Any:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(0.05)
            return super().open(name, mode)
        finally:
            with self.lock:
                self.active -= 1


def swap_filestore(source: SentryStore, backend: str, **options: Any) -> Any:
    """The Sentry alias served by ``backend`` over the same directory."""
    location = source.filestore.location  # type: ignore[attr-defined]
    alias = {"BACKEND": backend, "OPTIONS": {"location": location, **options}}
    return override_settings(STORAGES={**settings.STORAGES, ALIAS: alias})


@on_filesystem
def test_blobs_are_fetched_concurrently(storage, source):
    datas = [os.urandom(4096) for _ in range(4)]
    ids = [source.put(d, f"c{n}.bin") for n, d in enumerate(datas)]
    with swap_filestore(source, f"{__name__}.SlowFilestore"):
        report = SentryImporter(ALIAS, ALIAS, workers=8).run()
        most = storages[ALIAS].most
    assert report.imported == 4 and report.blobs == 16
    assert most >= 4, f"at most {most} blob read(s) at once"
    assert [content(imported(i)) for i in ids] == datas


@on_filesystem
def test_an_unreadable_object_is_reported_after_retries_and_the_run_goes_on(storage, source):
    flaky, fine = source.put(os.urandom(300), "flaky.bin"), source.put(b"ok", "fine.bin")
    path = source.blob_path(flaky, 0)
    with (
        swap_filestore(source, "testproject.faults.FlakyFileSystemStorage", fail_names=[path]),
        override_settings(CHUNKFILES={"STORAGE": "blobs", "ATTEMPTS": 3, "BACKOFF": 0.01}),
    ):
        status, out, err = run_import()
        opens = storages[ALIAS].opens
    assert status == 1 and "Imported 1 of 2" in out
    assert f"Sentry file {flaky} ('flaky.bin') at offset 0, blob" in err
    assert "unreadable from the Sentry filestore: ConnectionError" in err
    assert opens == 3 + 1  # three attempts at the flaky object, one read of the other
    assert content(imported(fine)) == b"ok"


class InterruptedFilestore(FileSystemStorage):
    """A filestore where reading ``interrupt_at`` is cut short by Ctrl-C."""

    def __init__(self, *, interrupt_at: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interrupt_at = interrupt_at

    def open(self, name: str, mode: str = "rb") -> Any:
        if name == self.interrupt_at:
            raise KeyboardInterrupt
        return super().open(name, mode)


@on_filesystem
def test_ctrl_c_exits_130_and_a_rerun_finishes_the_job(storage, source):
    datas = [os.urandom(2000 + n) for n in range(3)]
    ids = [source.put(d, f"i{n}.bin") for n, d in enumerate(datas)]
    backend = f"{__name__}.InterruptedFilestore"
    with swap_filestore(source, backend, interrupt_at=source.blob_path(ids[2], 1024)):
        status, _, err = run_import()
    assert status == 130
    assert "interrupted after importing 0 file(s); run again to import the rest" in err
    assert not File.objects.exists()

    status, out, _ = run_import()
    assert status == 0 and "Imported 3 of 3" in out
    assert [content(imported(i)) for i in ids] == datas


@on_filesystem
def test_a_failing_blob_storage_stops_the_run_with_one_line_and_a_rerun_resumes(storage, source):
    data = os.urandom(3000)
    file_id = source.put(data, "x.bin")
    failing = {
        "BACKEND": "testproject.faults.FlakyFileSystemStorage",
        "OPTIONS": {**storage.options, "fail_saves_from": 1},
    }
    with override_settings(
        STORAGES={**settings.STORAGES, "blobs": failing},
        CHUNKFILES={"STORAGE": "blobs", "ATTEMPTS": 2, "BACKOFF": 0.01},
    ):
        status, _, err = run_import()
    assert status == 1
    assert "could not be written" in err and "Traceback" not in err
    assert not File.objects.exists() and not FileBlob.objects.exists()

    assert run_import()[0] == 0
    assert content(imported(file_id)) == data


@on_filesystem
def test_a_file_sentry_never_stored_stays_unstored(storage, source):
    file_id = int(
        source.conn.execute(
            "INSERT INTO sentry_file (name, type, timestamp, headers, size, checksum) "
            "VALUES ('pending.bin', 'release.file', now(), '{}', NULL, NULL) RETURNING id"
        ).fetchone()[0]
    )
    assert run_import()[0] == 0
    file = imported(file_id)
    assert (file.size, file.checksum, file.blob_refs()) == (None, None, [])
    with pytest.raises(FileNotStoredError):
        file.getfile()


@on_filesystem
def test_files_are_read_page_by_page(storage, source, monkeypatch):
    monkeypatch.setattr("chunkfiles.sentry.PAGE", 2)
    datas = [os.urandom(100 + n) for n in range(5)]
    ids = [source.put(d, f"p{n}") for n, d in enumerate(datas)]
    SentryImport.objects.create(
        source=ALIAS, sentry_file_id=ids[2], file=File.objects.create(name="done", type="x")
    )
    report = SentryImporter(ALIAS, ALIAS).run()
    assert (report.imported, report.skipped) == (4, 1)
    assert [content(imported(i)) for i in ids[:2] + ids[3:]] == datas[:2] + datas[3:]


@on_filesystem
def test_a_file_imported_meanwhile_by_another_run_is_counted_as_skipped(storage, source):
    first, second = os.urandom(300), os.urandom(400)
    first_id, second_id = source.put(first, "first.bin"), source.put(second, "second.bin")
    other = File.objects.create(name="by another run", type="x")

    def other_run_commits(nbytes: int) -> None:
        SentryImport.objects.get_or_create(
            source=ALIAS, sentry_file_id=first_id, defaults={"file": other}
        )

    report = SentryImporter(ALIAS, ALIAS, on_progress=other_run_commits).run()
    assert (report.imported, report.skipped, report.problems) == (1, 1, [])
    assert imported(first_id).pk == other.pk
    assert content(imported(second_id)) == second
    assert File.objects.count() == 2
