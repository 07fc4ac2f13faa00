"""``manage.py chunkfiles_verify``: re-read blobs from storage and check them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat

from chunkfiles.dispatch import add_celery_arguments
from chunkfiles.management.base import ChunkfilesCommand
from chunkfiles.verify import Checked, verify_blobs, verify_files


class Command(ChunkfilesCommand):
    help = (
        "Re-read blobs (--blobs, the default) and/or whole files (--files) from storage and "
        "check sizes and checksums. Reports each problem and exits 1 if there is any; a blob "
        "whose object is missing or corrupt is marked lost, so the next upload of the same "
        "bytes heals it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--blobs", action="store_true", help="Check every blob once.")
        parser.add_argument(
            "--files",
            action="store_true",
            help="Read every file in order: index, blobs and the whole file's SHA-1.",
        )
        parser.add_argument(
            "--since", help="Only blobs/files created at or after this ISO date/time."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report only; mark nothing lost."
        )
        self.add_workers_argument(parser)
        add_celery_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        from chunkfiles.models import File, FileBlob

        using = self.database(options)
        workers = self.workers(options)
        since = self.when(options["since"], "--since")
        dry_run = options["dry_run"]
        parts = []
        if options["blobs"] or not options["files"]:
            blobs = FileBlob.objects.using(using).all()
            if since is not None:
                blobs = blobs.filter(timestamp__gte=since)
            total = blobs.aggregate(size=Sum("size"))["size"] or 0
            if options["celery"]:
                counts = self.on_celery(options, "chunkfiles.verify_blobs", blobs, "blob_ids")
            else:
                with self.progress(options, total_bytes=total, desc="blobs") as progress:
                    counts = self.tally(
                        options, verify_blobs(blobs, workers=workers, dry_run=dry_run), progress
                    )
            parts.append(self.describe("blob", counts))
        if options["files"]:
            files = File.objects.using(using).all()
            if since is not None:
                files = files.filter(timestamp__gte=since)
            total = files.aggregate(size=Sum("size"))["size"] or 0
            if options["celery"]:
                counts = self.on_celery(options, "chunkfiles.verify_files", files, "file_ids")
            else:
                with self.progress(options, total_bytes=total, desc="files") as progress:
                    counts = self.tally(
                        options, verify_files(files, workers=workers, dry_run=dry_run), progress
                    )
            parts.append(self.describe("file", counts))
        self.summary(options, "Verified " + "; ".join(parts) + ".")

    def tally(self, options: dict[str, Any], results: Any, progress: Any) -> dict[str, int]:
        counts = {"checked": 0, "bytes": 0, "bad": 0, "lost": 0, "recovered": 0}
        for result in results:
            assert isinstance(result, Checked)
            counts["checked"] += 1
            counts["bytes"] += result.size
            counts["recovered"] += result.recovered
            if result.problems:
                counts["bad"] += 1
                counts["lost"] += any(p.marked_lost for p in result.problems)
            for problem in result.problems:
                self.problem(str(problem))
            progress.advance(files=1, nbytes=result.size)
        return counts

    def on_celery(self, options: dict[str, Any], task: str, rows: Any, key: str) -> dict[str, int]:
        """``--celery``: batches of ids to ``chunkfiles.tasks``; the same counts as ``tally``."""
        from chunkfiles.dispatch import run_for_command

        result = run_for_command(
            self,
            options,
            task,
            rows,
            key,
            size=options["batch_size"],
            workers=self.workers(options),
            dry_run=options["dry_run"],
        )
        return {k: int(result.get(k, 0)) for k in ("checked", "bytes", "bad", "lost", "recovered")}

    @staticmethod
    def describe(noun: str, counts: dict[str, int]) -> str:
        text = (
            f"{counts['checked']} {noun}(s), {filesizeformat(counts['bytes'])}: "
            f"{counts['bad']} with problems"
        )
        if counts["lost"]:
            text += f", {counts['lost']} with a blob now marked lost"
        if counts["recovered"]:
            text += f", {counts['recovered']} lost blob(s) found intact again"
        return text
