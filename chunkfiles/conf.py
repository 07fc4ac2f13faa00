"""The one place that reads Django settings for chunkfiles.

Everything else asks ``chunkfiles_settings`` so that ``override_settings``
in tests (and ``setting_changed`` at run time) is honoured everywhere.
``SETTINGS`` is the single source of every key, its default and its meaning;
the documentation's settings reference is generated from it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


class Setting(NamedTuple):
    """One key of ``settings.CHUNKFILES``."""

    name: str
    default: Any
    doc: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "STORAGE",
        "default",
        "Alias in ``STORAGES`` where new blob objects are written. Each blob row "
        "remembers the alias it was written to, so changing this later (or "
        "``chunkfiles_move_storage``) never strands existing blobs.",
    ),
    Setting(
        "BLOB_SIZE",
        8 * 1024 * 1024,
        "Bytes per blob for ``putfile``. 8 MiB is Sentry's chunk-upload size and the "
        "best read/upload/request-cost trade-off measured (see the benchmark).",
    ),
    Setting(
        "BLOB_PREFIX",
        "chunkfiles/",
        "Prefix of every blob's storage name, so blobs can share a bucket or "
        "directory; garbage collection of orphans never looks outside it.",
    ),
    Setting("UPLOAD_WORKERS", 16, "Concurrent blob writes during ``putfile``/``from_files``."),
    Setting(
        "PREFETCH_WORKERS",
        16,
        "Threads filling the temp file for ``getfile(prefetch=True)`` and ``save_to()``.",
    ),
    Setting(
        "READAHEAD",
        8,
        "Blobs in flight for ``getfile(readahead=True)``, and the largest window the "
        "default (adaptive) mode grows to on sequential reads.",
    ),
    Setting(
        "TEMP_DIR", None, "Directory for prefetch temp files; ``None`` means tempfile's default."
    ),
    Setting(
        "CONNECT_TIMEOUT",
        5.0,
        "Seconds to wait for a storage connection (handed to boto3's ``connect_timeout``).",
    ),
    Setting(
        "READ_TIMEOUT",
        15.0,
        "Seconds one socket read from storage may block (boto3's ``read_timeout``).",
    ),
    Setting(
        "ATTEMPTS",
        5,
        "Tries per blob operation (GET, PUT, DELETE) before the error reaches the "
        "caller: broken bodies, 5xx/SlowDown, timeouts and checksum failures are "
        "retried with jittered exponential backoff; a missing object is not. No "
        "attempt starts that could not end (connect + read timeout) before DEADLINE. "
        "5 keeps 99.7% of 32-blob file reads whole when one GET in ten is cut.",
    ),
    Setting("BACKOFF", 0.1, "Seconds of the first retry's backoff; doubled per retry, jittered."),
    Setting(
        "DEADLINE",
        60.0,
        "Seconds one blob operation may take over all its attempts; no retry "
        "starts that cannot finish in time. A never-answering storage makes a "
        "read or upload fail within this bound.",
    ),
    Setting(
        "CLOSE_TIMEOUT",
        2.0,
        "Seconds ``close()`` of a reader waits for fetches already running before "
        "abandoning them (they end on their own read timeout). Finalisers never wait.",
    ),
    Setting(
        "DB_RETRIES",
        10,
        "Attempts of an upload's commit when the database reports a deadlock or a "
        "serialization failure (only when the upload owns the transaction).",
    ),
    Setting(
        "GC_GRACE",
        24 * 60 * 60,
        "Seconds a blob must have been unused (or an orphan object must be old) "
        "before garbage collection removes it.",
    ),
)

#: Defaults for the keys of ``settings.CHUNKFILES``.
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}


class ChunkfilesSettings:
    """Attribute access to ``settings.CHUNKFILES`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "CHUNKFILES", None) or {}
        return dict(value)

    def _merged(self) -> dict[str, Any]:
        if self._cache is None:
            self._cache = {**DEFAULTS, **self.user_settings}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown chunkfiles setting: {name}")
        return self._merged()[name]

    def reload(self) -> None:
        self._cache = None

    def django_setting(self, name: str, default: Any = None) -> Any:
        """Another Django setting a check needs (kept here: only conf reads settings)."""
        return getattr(settings, name, default)

    @property
    def storages_setting(self) -> dict[str, Any]:
        """Django's ``STORAGES`` (read here so checks need not touch settings)."""
        return dict(getattr(settings, "STORAGES", {}) or {})


chunkfiles_settings = ChunkfilesSettings()


def current_storage() -> str:
    """``CHUNKFILES['STORAGE']`` now: where new blob objects go, and ``FileBlob.storage``'s default.

    A module-level function because migrations refer to a field's callable
    default by its import path.
    """
    return str(chunkfiles_settings.STORAGE)


def blob_alias(recorded: str) -> str:
    """The ``STORAGES`` alias holding a blob whose ``FileBlob.storage`` reads ``recorded``.

    Every reader of that column goes through here (and every query through
    ``recorded_values``). Each row chunkfiles writes records its alias, and
    migrations 0002 and 0006 filled in the rows that did not, so ``recorded``
    is empty only for rows other code wrote straight into the table. Reading
    those from the current ``STORAGE`` is a safety net, kept in this one place:
    it guesses wrong once ``STORAGE`` changes, so such rows must be given
    their alias before it does.
    """
    return recorded or current_storage()


def recorded_values(alias: str) -> tuple[str, ...]:
    """The ``FileBlob.storage`` values that ``blob_alias`` reads as ``alias``; for filters."""
    return (alias, "") if alias == current_storage() else (alias,)


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CHUNKFILES", "STORAGES"):
        chunkfiles_settings.reload()
