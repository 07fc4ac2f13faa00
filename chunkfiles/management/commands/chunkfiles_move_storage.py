"""``manage.py chunkfiles_move_storage``: move blob objects to another storage, online."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat

from chunkfiles.dispatch import add_celery_arguments
from chunkfiles.management.base import ChunkfilesCommand
from chunkfiles.move import STATUSES, Moved, blobs_to_move, check_aliases, move_storage, tally


class Command(ChunkfilesCommand):
    help = (
        "Copy every blob object to the storage --to ALIAS, verify the copy, point the "
        "blob's row at it, and with --delete-source remove the old object. Safe while "
        "the site runs; interrupted, re-run it to carry on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--to", required=True, dest="dst", help="STORAGES alias to move to.")
        parser.add_argument(
            "--from", dest="src", help="Only move blobs now in this STORAGES alias."
        )
        parser.add_argument(
            "--delete-source",
            action="store_true",
            help="Delete each old object once its blob's row names the copy.",
        )
        self.add_workers_argument(parser)
        add_celery_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        using = self.database(options)
        dst, src = options["dst"], options["src"]
        if options["workers"] is not None and options["workers"] < 1:
            # ChunkfilesCommand.workers() takes 0 for "default"; 0 is a mistake here.
            raise CommandError("--workers must be at least 1")
        workers = self.workers(options)
        with self.command_errors(ValueError):
            check_aliases(dst, src)
        if options["celery"]:
            counts = self.move_on_celery(options, using, workers)
        else:
            counts = self.move_here(options, using, workers)
        deleted = (
            f", {counts['source_deleted']} old objects deleted" if options["delete_source"] else ""
        )
        self.summary(
            options,
            f"Moved {counts['moved']} blob(s), {filesizeformat(counts['bytes'])}, to {dst!r}"
            f"{deleted} ({counts['changed']} changed meanwhile, {counts['missing']} missing,"
            f" {counts['corrupt']} corrupt, {counts['failed']} failed).",
        )

    def move_here(self, options: dict[str, Any], using: str, workers: int) -> dict[str, int]:
        dst, src = options["dst"], options["src"]
        todo = blobs_to_move(dst, src=src, using=using).aggregate(b=Sum("size"))["b"] or 0
        with self.progress(options, total_bytes=todo, desc="move") as progress:

            def reported() -> Iterator[Moved]:
                for moved in move_storage(
                    dst,
                    src=src,
                    using=using,
                    workers=workers,
                    delete_source=options["delete_source"],
                ):
                    progress.advance(files=int(moved.status == "moved"), nbytes=moved.size)
                    self.report(options, moved)
                    yield moved

            return tally(reported())

    def report(self, options: dict[str, Any], moved: Moved) -> None:
        if moved.status in ("missing", "corrupt", "failed"):
            self.problem(f"blob {moved.blob_id} {moved.status}: {moved.error}")
        else:
            self.detail(options, f"{moved.status}: blob {moved.blob_id}")

    def move_on_celery(self, options: dict[str, Any], using: str, workers: int) -> dict[str, int]:
        from chunkfiles.dispatch import run_for_command

        result = run_for_command(
            self,
            options,
            "chunkfiles.move_blobs",
            blobs_to_move(options["dst"], src=options["src"], using=using),
            "blob_ids",
            size=int(options["batch_size"]),
            dst=options["dst"],
            workers=workers,
            delete_source=options["delete_source"],
        )
        return {key: int(result.get(key, 0)) for key in (*STATUSES, "bytes", "source_deleted")}
