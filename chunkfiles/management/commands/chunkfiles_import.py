"""``manage.py chunkfiles_import PATH...``: store files and directory trees."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.template.defaultfilters import filesizeformat

from chunkfiles.importing import ImportPathError, import_paths
from chunkfiles.management.base import ChunkfilesCommand


class Command(ChunkfilesCommand):
    help = (
        "Store files and directory trees (recursively; each file is named by its path "
        "relative to the directory given). Prints how many files and bytes were new and "
        "how many were deduplicated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("paths", nargs="+", metavar="PATH", help="Files or directories.")
        parser.add_argument("--type", default="default", help="File.type of every file stored.")
        parser.add_argument(
            "--headers-from-mimetype",
            action="store_true",
            help="Set Content-Type (and Content-Encoding) guessed from each name.",
        )
        self.add_workers_argument(parser, default=4)

    def handle(self, *args: Any, **options: Any) -> None:
        using = self.database(options)
        files = new_files = skipped = 0
        total = new = 0
        with (
            self.command_errors(ImportPathError, OSError),
            self.progress(options, desc="import") as progress,
        ):
            for done in import_paths(
                options["paths"],
                type=options["type"],
                using=using,
                workers=self.workers(options),
                headers_from_mimetype=options["headers_from_mimetype"],
            ):
                if done.skipped:
                    skipped += 1
                    self.detail(options, f"skipped {done.path}: {done.skipped}")
                    continue
                files += 1
                total += done.size
                new += done.new_bytes
                new_files += not done.deduplicated
                progress.advance(files=1, nbytes=done.size)
                self.detail(options, f"stored {done.path} as file {done.file_id} {done.name!r}")
        self.summary(
            options,
            f"Imported {files} file(s), {filesizeformat(total)}: {new_files} file(s) and "
            f"{filesizeformat(new)} new, {files - new_files} file(s) and "
            f"{filesizeformat(total - new)} deduplicated"
            + (f"; {skipped} skipped (symlinks, special files)." if skipped else "."),
        )
