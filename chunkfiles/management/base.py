"""What every ``chunkfiles_*`` management command shares.

Subclass ``ChunkfilesCommand``, call ``super().add_arguments(parser)``, keep
``handle`` thin over a service function and use the helpers::

    class Command(ChunkfilesCommand):
        help = "Do something to many files."

        def add_arguments(self, parser):
            super().add_arguments(parser)          # --database
            self.add_workers_argument(parser)      # --workers N

        def handle(self, *args, **options):
            using = self.database(options)
            with self.progress(options, total_bytes=..., total_files=...) as progress:
                for outcome in some_service(..., using=using):
                    progress.advance(files=1, nbytes=outcome.size)
                    self.detail(options, f"done {outcome.name}")
            self.summary(f"Did {n} files.")

Expected failures become ``CommandError`` with a one-line message (exit
status 1); ``self.fail_later`` records a problem that should still let the
command finish but make it exit 1 (``--keep-going``, ``verify``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import IO, Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, router
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

#: Default for ``--workers``: files or blobs in flight at once.
DEFAULT_WORKERS = 16


class Progress:
    """Files and bytes done; a tqdm bar on stderr when it is shown, else just counters."""

    def __init__(self, bar: Any = None) -> None:
        self.bar = bar
        self.files = 0
        self.bytes = 0

    def advance(self, *, files: int = 0, nbytes: int = 0) -> None:
        """Count ``files`` more files and ``nbytes`` more bytes as done."""
        self.files += files
        self.bytes += nbytes
        if self.bar is not None:
            self.bar.update(nbytes)
            if files:
                self.bar.set_postfix_str(f"{self.files} files", refresh=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()


class ChunkfilesCommand(BaseCommand):
    """Base of the chunkfiles commands: ``--database``, progress, summary, failures."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias holding the chunkfiles tables (default: the router's choice).",
        )

    @staticmethod
    def add_workers_argument(parser: CommandParser, default: int = DEFAULT_WORKERS) -> None:
        """Add ``--workers N`` (at least 1)."""
        parser.add_argument(
            "--workers",
            type=int,
            default=default,
            help=f"Files or blobs in flight at once (default {default}).",
        )

    def execute(self, *args: Any, **options: Any) -> str | None:
        self._failures = 0
        return super().execute(*args, **options)

    # -- options ---------------------------------------------------------------------
    def database(self, options: dict[str, Any]) -> str:
        """The alias from ``--database``, else where the router reads ``File`` rows."""
        from django.db import connections

        from chunkfiles.models import File

        alias = options.get("database") or router.db_for_read(File) or DEFAULT_DB_ALIAS
        if alias not in connections:
            raise CommandError(f"unknown database alias {alias!r}")
        return str(alias)

    @staticmethod
    def workers(options: dict[str, Any]) -> int:
        """``--workers`` (``DEFAULT_WORKERS`` when not given); 0 or less is an error."""
        value = options.get("workers")
        workers = DEFAULT_WORKERS if value is None else int(value)
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        return workers

    @staticmethod
    def when(text: str | None, option: str) -> datetime | None:
        """An ISO date or date-time option (``2026-01-31``, ``2026-01-31T12:00``), aware."""
        if not text:
            return None
        value = parse_datetime(text)
        if value is None:
            day = parse_date(text)
            if day is None:
                raise CommandError(f"{option} must be an ISO date or date-time, not {text!r}")
            value = datetime(day.year, day.month, day.day)
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value

    # -- output ----------------------------------------------------------------------
    def progress(
        self, options: dict[str, Any], *, total_bytes: int | None = None, desc: str = ""
    ) -> Progress:
        """A progress bar on stderr if it is a terminal and verbosity is at least 1."""
        if int(options.get("verbosity", 1)) < 1 or not self.stderr.isatty():
            return Progress()
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional: no bar, same counts
            return Progress()

        bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc or None,
            file=cast(IO[str], self.stderr._out),
            dynamic_ncols=True,
        )
        return Progress(bar)

    def detail(self, options: dict[str, Any], message: str) -> None:
        """A line on stdout at verbosity 2 and up (one per file, say)."""
        if int(options.get("verbosity", 1)) >= 2:
            self.stdout.write(message)

    def problem(self, message: str) -> None:
        """Report a problem on stderr and make the command exit 1 at the end."""
        self._failures += 1
        # One line per problem, whatever a storage's error text looks like.
        self.stderr.write(message.replace("\r", " ").replace("\n", " "))

    def summary(self, options: dict[str, Any], message: str) -> None:
        """The one-line summary (verbosity 1 and up); exits 1 if problems were reported."""
        if int(options.get("verbosity", 1)) >= 1:
            style = self.style.ERROR if self._failures else self.style.SUCCESS
            self.stdout.write(style(message))
        if self._failures:
            raise CommandError(f"{self._failures} problem(s); see above", returncode=1)

    @contextlib.contextmanager
    def command_errors(self, *errors: type[BaseException]) -> Iterator[None]:
        """Turn ``errors`` (a service error, ``ValueError``) into a one-line ``CommandError``."""
        try:
            yield
        except errors as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(message) from exc
