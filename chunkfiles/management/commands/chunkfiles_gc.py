"""``manage.py chunkfiles_gc``: remove unused blobs, their objects and orphan objects."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from chunkfiles.gc import BATCH_SIZE, BlobReport, GcError, collect_blobs, due_for_collection
from chunkfiles.management.base import ChunkfilesCommand
from chunkfiles.orphans import OrphanReport, collect_orphans


def _size(nbytes: int) -> str:
    return f"{filesizeformat(nbytes)} ({nbytes} bytes)"


class Command(ChunkfilesCommand):
    help = (
        "Remove blobs that no file has used for the grace period, then their objects. "
        "Safe while uploads run. With --orphans, also delete objects under "
        "CHUNKFILES['BLOB_PREFIX'] that no blob row names and that are older than the "
        "grace period (left by crashed uploads). Run it from cron, e.g. hourly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--grace",
            type=float,
            default=None,
            metavar="SECONDS",
            help=(
                "Seconds a blob must have been unused (and an orphan object must be old) "
                "before it goes (default CHUNKFILES['GC_GRACE']). Blobs are timed from the "
                "first run that saw them unused, so with a grace above 0 a fresh blob "
                "is removed by a later run."
            ),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Change nothing (not even the 'unused since' stamps); report what would go.",
        )
        parser.add_argument(
            "--orphans",
            action="store_true",
            help=(
                "Also list the storages under BLOB_PREFIX and delete objects no row names. "
                "Never use --grace 0 with it while uploads may be running."
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            metavar="N",
            help=f"Blob rows per transaction and names per lookup (default {BATCH_SIZE}).",
        )
        parser.add_argument(
            "--celery",
            action="store_true",
            help="Run the sweep as a Celery task on a worker (needs django-chunkfiles[celery]).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = self.database(options) if options["database"] else None
        grace, dry_run = options["grace"], options["dry_run"]
        batch_size = options["batch_size"]
        if options["celery"]:
            self.sweep_on_celery(options, using)
            return
        with self.command_errors(GcError):
            _, nbytes = due_for_collection(using=using, grace=grace)
            with self.progress(options, total_bytes=nbytes, desc="blobs") as bar:
                blobs = collect_blobs(
                    using=using,
                    grace=grace,
                    dry_run=dry_run,
                    batch_size=batch_size,
                    progress=lambda n, size: bar.advance(files=n, nbytes=size),
                )
            self._report_blobs(options, blobs)
            orphans = None
            if options["orphans"]:
                with self.progress(options, desc="orphans") as bar:
                    orphans = collect_orphans(
                        using=using,
                        grace=grace,
                        dry_run=dry_run,
                        batch_size=batch_size,
                        progress=lambda n, size: bar.advance(files=n),
                    )
                self._report_orphans(options, orphans)
        failed = blobs.failed + (orphans.failed if orphans else [])
        for alias, name in failed:
            self.problem(f"could not delete object {name!r} in storage {alias!r}")
        verb = "Would remove" if dry_run else "Removed"
        summary = f"{verb} {blobs.rows} blobs, {_size(blobs.bytes)}"
        if orphans is not None:
            summary += f", and {orphans.deleted} orphan objects"
        self.summary(options, summary + ("" if failed else "."))

    def sweep_on_celery(self, options: dict[str, Any], using: str | None) -> None:
        """``--celery``: the same sweep as one ``chunkfiles.gc_sweep`` task."""
        from chunkfiles.dispatch import CeleryUnavailableError, dispatch

        sweep = {
            "using": using,
            "grace": options["grace"],
            "orphans": options["orphans"],
            "dry_run": options["dry_run"],
            "batch_size": options["batch_size"],
        }
        try:
            result = dispatch("chunkfiles.gc_sweep", [sweep])
        except CeleryUnavailableError as exc:
            raise CommandError(str(exc)) from exc
        for line in result.get("problems", []) + result.get("errors", []):
            self.problem(str(line))
        verb = "Would remove" if options["dry_run"] else "Removed"
        summary = f"{verb} {result.get('rows', 0)} blobs, {_size(result.get('bytes', 0))}"
        if options["orphans"]:
            summary += f", and {result.get('orphans_deleted', 0)} orphan objects"
        self.summary(options, summary + ".")

    def _report_blobs(self, options: dict[str, Any], report: BlobReport) -> None:
        would = "would be " if report.dry_run else ""
        self.detail(
            options,
            f"{report.marked} blobs {would}newly marked unused, "
            f"{report.revived} {would}marked used again.",
        )
        if report.kept:
            self.detail(options, f"{report.kept} blobs kept: an upload linked them meanwhile.")
        if not report.dry_run:
            self.detail(options, f"{report.objects} objects of removed blobs deleted.")

    def _report_orphans(self, options: dict[str, Any], report: OrphanReport) -> None:
        self.detail(
            options,
            f"Listed {report.listed} objects in {', '.join(report.aliases)}; "
            f"{report.young} newer than the grace period were left alone.",
        )
