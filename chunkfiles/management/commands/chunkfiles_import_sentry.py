"""``manage.py chunkfiles_import_sentry``: a Sentry file store into chunkfiles."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import InvalidStorageError, storages
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError, connections
from django.template.defaultfilters import filesizeformat

from chunkfiles.management.base import ChunkfilesCommand
from chunkfiles.sentry import Filters
from chunkfiles.sentry_import import SentryImporter


class Command(ChunkfilesCommand):
    help = (
        "Import files from Sentry's file store: the tables sentry_file, sentry_fileblob and "
        "sentry_fileblobindex in --database, the blob objects in --storage. Every blob is "
        "checked against Sentry's size and SHA-1; broken files are reported and skipped "
        "(exit status 1). Re-running imports only what is not imported yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # No super(): here --database names Sentry's database, the source; the
        # chunkfiles tables are where the router writes File rows.
        parser.add_argument(
            "--database",
            required=True,
            help="DATABASES alias of Sentry's database (the source).",
        )
        parser.add_argument(
            "--storage",
            required=True,
            help="STORAGES alias pointing at Sentry's filestore: the directory or bucket "
            "(and prefix) Sentry's filestore.backend writes to.",
        )
        pick = parser.add_argument_group("which Sentry files (each given option must match)")
        pick.add_argument(
            "--id", type=int, action="append", default=[], dest="ids", help="A sentry_file id."
        )
        pick.add_argument(
            "--type", action="append", default=[], dest="types", help="sentry_file.type."
        )
        pick.add_argument("--since", help="Files created at or after this ISO date/time.")
        self.add_workers_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        database, storage = options["database"], options["storage"]
        if database not in connections:
            raise CommandError(f"unknown database alias {database!r}")
        try:
            storages[storage]
        except InvalidStorageError:
            raise CommandError(f"unknown storage alias {storage!r}") from None
        filters = Filters(options["ids"], options["types"], self.when(options["since"], "--since"))
        importer = SentryImporter(
            database,
            storage,
            workers=self.workers(options),
            on_problem=lambda problem: self.problem(str(problem)),
            on_imported=lambda sentry, file: self.detail(
                options, f"imported Sentry file {sentry.id} ({sentry.name!r}) as file {file.pk}"
            ),
        )
        try:
            unknown = importer.tables.unknown_ids(filters.ids)
            count, total = importer.totals(filters)
        except DatabaseError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(f"cannot read Sentry's tables in {database!r}: {first}") from exc
        if unknown:
            raise CommandError(f"no Sentry file with id(s) {', '.join(map(str, unknown))}")
        with self.progress(options, total_bytes=total, desc="import") as progress:
            importer.on_progress = lambda nbytes: progress.advance(nbytes=nbytes)
            try:
                # Faults on our side (blob storage, database) stop the run; what
                # was committed stays, and the next run resumes after it.
                with self.command_errors(OSError, DatabaseError):
                    report = importer.run(filters)
            except KeyboardInterrupt:
                done = importer.report.imported
                raise CommandError(
                    f"interrupted after importing {done} file(s); run again to import the rest",
                    returncode=130,
                ) from None
        self.summary(
            options,
            f"Imported {report.imported} of {count} Sentry file(s) ({report.blobs} blob(s), "
            f"{filesizeformat(report.bytes)} read); {report.skipped} imported before, "
            f"{len(report.problems)} broken.",
        )
