"""``manage.py chunkfiles_export``: files out of the store, to a directory, an archive or stdout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Count, Sum
from django.template.defaultfilters import filesizeformat

from chunkfiles.archive import archive_format, export_to_archive, write_one
from chunkfiles.dispatch import add_celery_arguments
from chunkfiles.export import (
    Exported,
    ExportError,
    atomic_text,
    missing_ids,
    parse_shard,
    select_files,
)
from chunkfiles.exportdir import export_to_directory
from chunkfiles.exportstore import export_to_storage, storage_target
from chunkfiles.management.base import ChunkfilesCommand, Progress


class Command(ChunkfilesCommand):
    help = (
        "Export stored files to a directory (--output DIR), an archive (--archive "
        "PATH.tar|.tar.gz|.zip), stdout (--output -) or a storage (--storage ALIAS "
        "[--prefix P], with --celery on many workers). Output files appear atomically; "
        "re-run with --skip-existing to resume."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        pick = parser.add_argument_group("which files (each given option must match)")
        pick.add_argument(
            "--id", type=int, action="append", default=[], dest="ids", help="A File id; repeatable."
        )
        pick.add_argument(
            "--name",
            action="append",
            default=[],
            dest="names",
            help="Shell glob on File.name, e.g. '*.pdf'; repeatable.",
        )
        pick.add_argument(
            "--type", action="append", default=[], dest="types", help="File.type; repeatable."
        )
        pick.add_argument("--since", help="Files created at or after this ISO date/time.")
        pick.add_argument("--until", help="Files created before this ISO date/time.")
        pick.add_argument("--all", action="store_true", help="Every file.")
        pick.add_argument("--shard", help="I/N: only the I-th of N disjoint slices (by id).")
        where = parser.add_argument_group("where to")
        where.add_argument("--output", help="Directory to write into, or - for stdout.")
        where.add_argument("--archive", help="Archive to write: .tar, .tar.gz, .tgz or .zip.")
        where.add_argument(
            "--storage",
            help="STORAGES alias to write into, as {prefix}{id}/{name}; files already "
            "there with their size are skipped (a re-run resumes).",
        )
        where.add_argument("--prefix", help="With --storage: the path to write under.")
        where.add_argument("--parents", action="store_true", help="Create the output directory.")
        where.add_argument("--manifest", help="Write a JSON-lines manifest of the files here.")
        existing = where.add_mutually_exclusive_group()
        existing.add_argument(
            "--skip-existing", action="store_true", help="Keep targets that exist (resume a run)."
        )
        existing.add_argument("--overwrite", action="store_true", help="Replace existing targets.")
        self.add_workers_argument(parser)
        parser.add_argument(
            "--verify",
            action="store_true",
            help="Also check each whole file's SHA-1 against File.checksum.",
        )
        parser.add_argument(
            "--fsync",
            action="store_true",
            help="Sync each file to disk before naming it (survives power loss; slower).",
        )
        parser.add_argument(
            "--keep-going",
            action="store_true",
            help="Export the rest after a broken file (exit 1 at the end).",
        )
        add_celery_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        from chunkfiles.models import File

        using = self.database(options)
        output, archive, storage = options["output"], options["archive"], options["storage"]
        self.check_destination(options)
        if not (options["ids"] or options["names"] or options["types"] or options["all"]) and not (
            options["since"] or options["until"]
        ):
            raise CommandError("choose files with --id, --name, --type, --since/--until or --all")
        if archive and options["keep_going"]:
            raise CommandError(
                "--keep-going needs --output DIR: an archive member cannot be taken back"
            )
        with self.command_errors(ValueError):
            shard = parse_shard(options["shard"]) if options["shard"] else None
            if archive:
                archive_format(archive)
            files = select_files(
                File.objects.using(using).all(),
                ids=options["ids"],
                names=options["names"],
                types=options["types"],
                since=self.when(options["since"], "--since"),
                until=self.when(options["until"], "--until"),
                shard=shard,
            )
            unknown = missing_ids(File.objects.using(using).all(), options["ids"])
            if unknown:
                raise CommandError(f"unknown file id(s): {', '.join(map(str, unknown))}")
            totals = files.aggregate(count=Count("pk"), size=Sum("size"))
            prefix = storage_target(storage, options["prefix"] or "") if storage else ""
        workers = self.workers(options)
        if options["celery"]:
            self.export_on_celery(files, options, prefix, workers, totals["count"])
            return
        if output == "-":
            self.export_stdout(files, options, workers)
            return
        if archive and options["skip_existing"] and os.path.lexists(archive):
            self.summary(options, f"{archive} exists; nothing to do (--skip-existing).")
            return
        counts = {"written": 0, "skipped": 0, "failed": 0}
        nbytes = 0
        with (
            self.command_errors(ExportError, OSError),
            self.progress(options, total_bytes=totals["size"] or 0) as progress,
            self.manifest(options) as manifest,
        ):
            for outcome in self.outcomes(files, options, prefix, workers, progress):
                if outcome.status == "failed" and storage and not options["keep_going"]:
                    raise ExportError(f"file {outcome.item.id} failed: {outcome.error}")
                counts[outcome.status] += 1
                nbytes += outcome.bytes
                # Bytes written to a directory or an archive were counted blob by
                # blob (on_bytes); the rest count when their file is done.
                counted = 0 if storage else outcome.bytes
                progress.advance(files=1, nbytes=0 if counted else outcome.item.size or 0)
                if manifest is not None:
                    manifest.write(outcome.manifest_line())
                self.report(options, outcome)
        target = archive or output or self.storage_name(storage, prefix)
        self.summary(
            options,
            f"Exported {counts['written']} file(s), {filesizeformat(nbytes)}, to {target}"
            f" ({counts['skipped']} skipped, {counts['failed']} failed"
            f" of {totals['count']} selected).",
        )

    @staticmethod
    def check_destination(options: dict[str, Any]) -> None:
        """``CommandError`` unless the destination options make one export."""
        output, archive, storage = options["output"], options["archive"], options["storage"]
        if options["prefix"] is not None and not storage:
            raise CommandError("--prefix needs --storage ALIAS")
        if sum(map(bool, (output, archive, storage))) != 1:
            raise CommandError(
                "give exactly one of --output DIR, --output - , --archive PATH or --storage ALIAS"
            )
        if storage and (options["parents"] or options["fsync"]):
            raise CommandError("--parents and --fsync need --output DIR")
        if options["celery"] and not storage:
            raise CommandError(
                "--celery needs --storage ALIAS: workers on other machines write into a "
                "storage, not this machine's files"
            )
        if options["celery"] and options["manifest"]:
            raise CommandError("--manifest is not available with --celery")

    @staticmethod
    def storage_name(alias: str, prefix: str) -> str:
        return f"storage {alias!r}" + (f" under {prefix!r}" if prefix else "")

    def outcomes(
        self, files: Any, options: dict[str, Any], prefix: str, workers: int, progress: Progress
    ) -> Iterator[Exported]:
        """The export the options ask for, to an archive, a storage or a directory."""

        def on_bytes(n: int) -> None:
            progress.advance(nbytes=n)

        if options["archive"]:
            return export_to_archive(
                files,
                options["archive"],
                workers=workers,
                verify=options["verify"],
                overwrite=options["overwrite"],
                parents=options["parents"],
                on_bytes=on_bytes,
            )
        if options["storage"]:
            return export_to_storage(
                files,
                options["storage"],
                prefix,
                workers=workers,
                verify=options["verify"],
                overwrite=options["overwrite"],
            )
        existing = "skip" if options["skip_existing"] else "error"
        return export_to_directory(
            files,
            options["output"],
            workers=workers,
            existing="overwrite" if options["overwrite"] else existing,
            verify=options["verify"],
            parents=options["parents"],
            keep_going=options["keep_going"],
            fsync=options["fsync"],
            on_bytes=on_bytes,
        )

    def export_on_celery(
        self, files: Any, options: dict[str, Any], prefix: str, workers: int, count: int
    ) -> None:
        """``--celery``: batches of file ids to ``chunkfiles.export_files`` on the workers.

        Every batch runs to its end whatever fails in it (as with --keep-going):
        each broken file is a problem line, and the command exits 1.
        """
        from chunkfiles.dispatch import run_for_command

        result = run_for_command(
            self,
            options,
            "chunkfiles.export_files",
            files,
            "file_ids",
            size=int(options["batch_size"]),
            alias=options["storage"],
            prefix=prefix,
            workers=workers,
            verify=options["verify"],
            overwrite=options["overwrite"],
        )
        self.summary(
            options,
            f"Exported {result.get('written', 0)} file(s), "
            f"{filesizeformat(result.get('bytes', 0))}, to "
            f"{self.storage_name(options['storage'], prefix)} ({result.get('skipped', 0)} "
            f"skipped, {result.get('failed', 0)} failed of {count} selected, "
            f"in {result['batches']} batches).",
        )

    def report(self, options: dict[str, Any], outcome: Exported) -> None:
        if outcome.status == "failed":
            self.problem(f"file {outcome.item.id} ({outcome.item.name!r}) failed: {outcome.error}")
        else:
            self.detail(options, f"{outcome.status}: {outcome.item.id} -> {outcome.path}")

    @contextlib.contextmanager
    def manifest(self, options: dict[str, Any]) -> Iterator[IO[str] | None]:
        if not options["manifest"]:
            yield None
            return
        with atomic_text(options["manifest"]) as out:
            yield out

    def export_stdout(self, files: Any, options: dict[str, Any], workers: int) -> None:
        stream: Any = self.stdout._out
        out: IO[bytes] = getattr(stream, "buffer", stream)
        with self.command_errors(ExportError, OSError):
            for outcome in write_one(files, out, workers=workers, verify=options["verify"]):
                if int(options["verbosity"]) >= 1:
                    self.stderr.write(
                        f"Exported file {outcome.item.id} ({outcome.bytes} bytes) to stdout."
                    )
