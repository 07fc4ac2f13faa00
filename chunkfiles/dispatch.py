"""Fan bulk work out over Celery: send batches as tasks, combine what comes back.

Used by the commands' ``--celery`` option; also callable from a script::

    from chunkfiles.dispatch import dispatch

    result = dispatch("chunkfiles.verify_files", ({"file_ids": ids} for ids in batches))

Celery is imported only when ``dispatch`` runs, so the package works without
the ``celery`` extra. The Celery app is the project's (``celery.current_app``:
the one a Django project imports in its ``__init__``), or ``app=``; its
workers must run with ``chunkfiles.tasks`` registered (``autodiscover_tasks()``).

Every task returns a JSON dict: numbers are summed, lists concatenated,
anything else kept from the first batch. A batch whose task raised adds a
line to ``errors`` instead of stopping the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

#: Seconds a dispatch waits for all batches by default (then ``TimeoutError``).
DEFAULT_TIMEOUT = 24 * 60 * 60.0

Result = dict[str, Any]


class CeleryUnavailableError(RuntimeError):
    """Celery is not installed, or no broker answered."""


def combine(total: Result, part: Result) -> Result:
    """Add the batch result ``part`` into ``total`` (numbers summed, lists joined)."""
    for key, value in part.items():
        if isinstance(value, bool) or not isinstance(value, int | float | list):
            total.setdefault(key, value)
        elif isinstance(value, list):
            total.setdefault(key, []).extend(value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def _app(app: Any) -> Any:
    try:
        import celery
    except ImportError as exc:
        raise CeleryUnavailableError(
            'Celery is not installed: pip install "django-chunkfiles[celery]"'
        ) from exc
    return app if app is not None else celery.current_app


def dispatch(
    task_name: str,
    batches: Iterable[dict[str, Any]],
    *,
    progress: Callable[[Result], None] | None = None,
    app: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    """Send each batch (the task's keyword arguments) as ``task_name``; their combined result.

    ``progress`` is called with each batch's result as it finishes, in any
    order. Tasks are sent by name, so the caller needs no task code. Waits
    until every batch is done (a batch whose worker died is redelivered by
    the broker and done again: the tasks are idempotent).
    """
    app = _app(app)
    from celery.result import ResultSet
    from kombu.utils.url import maybe_sanitize_url

    try:
        sent = [app.send_task(task_name, kwargs=batch) for batch in batches]
    except Exception as exc:
        broker = maybe_sanitize_url(app.conf.broker_url) or "the broker"  # no password
        raise CeleryUnavailableError(f"cannot send {task_name} to {broker}: {exc}") from exc
    total: Result = {"batches": 0, "errors": []}

    def collect(task_id: str, value: Any) -> None:
        if isinstance(value, BaseException):
            total["errors"].append(f"{task_id}: {type(value).__name__}: {value}")
            part: Result = {}
        else:
            part = dict(value or {})
        combine(total, part)
        total["batches"] += 1
        if progress is not None:
            progress(part)

    results = ResultSet(sent, app=app)
    try:
        if results.supports_native_join:
            results.join_native(timeout=timeout, propagate=False, callback=collect)
        else:
            results.join(timeout=timeout, propagate=False, callback=collect)
    finally:
        for result in sent:
            result.forget()  # the combined result is the caller's; free the backend
    return total


class BatchProgress:
    """Counts finished batches; a tqdm bar of them on ``stream`` when one is given."""

    def __init__(self, total: int | None, stream: Any = None, desc: str = "") -> None:
        self.done = 0
        self.bar: Any = None
        if stream is not None:
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="batch", desc=desc or None, file=stream)

    def __call__(self, result: Result) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def batch_progress(
    command: Any, options: dict[str, Any], total: int | None
) -> Iterator[BatchProgress]:
    """A ``BatchProgress`` for a management command: a bar on its stderr if that is a tty."""
    shown = int(options.get("verbosity", 1)) >= 1 and command.stderr.isatty()
    progress = BatchProgress(total, command.stderr._out if shown else None, desc="batches")
    try:
        yield progress
    finally:
        progress.close()


def add_celery_arguments(parser: CommandParser, batch_size: int = 500) -> None:
    """Add ``--celery`` and ``--batch-size N`` to a command."""
    parser.add_argument(
        "--celery",
        action="store_true",
        help="Send the work to Celery workers in batches (needs django-chunkfiles[celery]).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"Rows per Celery task with --celery (default {batch_size}).",
    )


def pk_batches(rows: QuerySet[Model], size: int) -> Iterator[list[int]]:
    """The ids of ``rows`` in batches of ``size``, by keyset pages (rows may change meanwhile)."""
    last = 0
    while True:
        ids = list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if ids:
            yield ids
        if len(ids) < size:
            return
        last = ids[-1]


def run_for_command(
    command: BaseCommand,
    options: dict[str, Any],
    task_name: str,
    rows: QuerySet[Model],
    key: str,
    *,
    size: int = 500,
    **task_kwargs: Any,
) -> Result:
    """A command's ``--celery``: ``rows``' ids in batches as ``{key: ids, "using": ...}``.

    Shows the bar of finished batches, reports every problem line and failed
    batch through ``command.problem`` (exit 1 at the summary) and returns the
    combined result. ``CommandError`` if Celery is missing or the broker is down.
    """
    if size < 1:
        raise CommandError("--batch-size must be at least 1")
    total = -(-rows.count() // size)
    work = ({key: ids, "using": rows.db, **task_kwargs} for ids in pk_batches(rows, size))
    try:
        with batch_progress(command, options, total) as progress:
            result = dispatch(task_name, work, progress=progress)
    except CeleryUnavailableError as exc:
        raise CommandError(str(exc)) from exc
    report = getattr(command, "problem", command.stderr.write)
    for line in result.get("problems", []):
        report(str(line))
    for line in result.get("errors", []):
        report(f"batch failed: {line}")
    return result
