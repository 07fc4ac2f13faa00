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
from chunkfiles.export import (
    Exported,
    ExportError,
    atomic_text,
    missing_ids,
    parse_shard,
    select_files,
)
from chunkfiles.exportdir import export_to_directory
from chunkfiles.management.base import ChunkfilesCommand, Progress


class Command(ChunkfilesCommand):
    help = (
        "Export stored files to a directory (--output DIR), an archive (--archive "
        "PATH.tar|.tar.gz|.zip) or stdout (--output -). Output files appear atomically; "
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

    def handle(self, *args: Any, **options: Any) -> None:
        from chunkfiles.models import File

        using = self.database(options)
        output, archive = options["output"], options["archive"]
        if bool(output) == bool(archive):
            raise CommandError("give exactly one of --output DIR, --output - or --archive PATH")
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
        workers = self.workers(options)
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
            for outcome in self.outcomes(files, options, workers, progress):
                counts[outcome.status] += 1
                nbytes += outcome.bytes
                # Written bytes were counted blob by blob; the rest count at once.
                progress.advance(files=1, nbytes=0 if outcome.bytes else outcome.item.size or 0)
                if manifest is not None:
                    manifest.write(outcome.manifest_line())
                self.report(options, outcome)
        target = archive or output
        self.summary(
            options,
            f"Exported {counts['written']} file(s), {filesizeformat(nbytes)}, to {target}"
            f" ({counts['skipped']} skipped, {counts['failed']} failed"
            f" of {totals['count']} selected).",
        )

    def outcomes(
        self, files: Any, options: dict[str, Any], workers: int, progress: Progress
    ) -> Iterator[Exported]:
        """The export the options ask for, to an archive or a directory."""

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
