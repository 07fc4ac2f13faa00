"""``manage.py chunkfiles_import PATH...``: store files and directory trees."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from chunkfiles.dispatch import add_celery_arguments
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
        add_celery_arguments(parser, batch_size=100)

    def handle(self, *args: Any, **options: Any) -> None:
        using = self.database(options)
        if options["celery"]:
            self.import_on_celery(options, using)
            return
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

    def import_on_celery(self, options: dict[str, Any], using: str) -> None:
        """``--celery``: the files, named here, in batches to ``chunkfiles.import_files``.

        Every worker must see the paths (a shared filesystem). A file already
        stored under its name and type with the same SHA-1 is not stored again.
        """
        from chunkfiles.dispatch import CeleryUnavailableError, batch_progress, dispatch
        from chunkfiles.importing import walk

        size = int(options["batch_size"])
        if size < 1:
            raise CommandError("--batch-size must be at least 1")
        with self.command_errors(ImportPathError, OSError):
            found = list(walk(options["paths"]))
        pairs = [[f.path, f.name] for f in found if not f.skipped]
        skipped = len(found) - len(pairs)
        work = (
            {
                "files": pairs[i : i + size],
                "type": options["type"],
                "using": using,
                "headers_from_mimetype": options["headers_from_mimetype"],
                "workers": self.workers(options),
            }
            for i in range(0, len(pairs), size)
        )
        try:
            with batch_progress(self, options, -(-len(pairs) // size)) as progress:
                result = dispatch("chunkfiles.import_files", work, progress=progress)
        except CeleryUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        for line in result.get("problems", []) + result.get("errors", []):
            self.problem(str(line))
        files, total = int(result.get("files", 0)), int(result.get("bytes", 0))
        new_files, new = int(result.get("new_files", 0)), int(result.get("new_bytes", 0))
        already = int(result.get("already", 0))
        self.summary(
            options,
            f"Imported {files} file(s), {filesizeformat(total)}: {new_files} file(s) and "
            f"{filesizeformat(new)} new, {files - new_files} file(s) and "
            f"{filesizeformat(total - new)} deduplicated"
            + (f"; {already} stored already" if already else "")
            + (f"; {skipped} skipped (symlinks, special files)." if skipped else "."),
        )
