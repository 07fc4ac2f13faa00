"""The one place that reads Django settings for chunkfiles.

Everything else asks ``chunkfiles_settings`` so that ``override_settings``
in tests (and ``setting_changed`` at run time) is honoured everywhere.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Defaults for the keys of ``settings.CHUNKFILES``.
DEFAULTS: dict[str, Any] = {
    # Alias of the entry in settings.STORAGES that holds blob objects.
    "STORAGE": "default",
    # Bytes per blob. 1 MiB matches Sentry and keeps S3 requests large enough
    # to amortise a round trip while keeping per-blob memory small.
    "BLOB_SIZE": 1024 * 1024,
    # Prefix of every blob's storage name, so blobs can share a bucket/dir.
    "BLOB_PREFIX": "chunkfiles/",
    # Concurrent blob writes during putfile/from_files.
    "UPLOAD_WORKERS": 16,
    # Threads filling the temp file for getfile(prefetch=True) and save_to().
    "PREFETCH_WORKERS": 16,
    # Blobs in flight for getfile(readahead=True) when no depth is given.
    "READAHEAD": 8,
    # Directory for prefetch temp files; None means tempfile's default.
    "TEMP_DIR": None,
}


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


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CHUNKFILES", "STORAGES"):
        chunkfiles_settings.reload()
