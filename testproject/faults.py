"""Storages that fail on purpose, for tests of error handling and cleanup."""

from __future__ import annotations

import threading
from typing import Any

from django.core.files.storage import FileSystemStorage


class FlakyFileSystemStorage(FileSystemStorage):
    """Raises ``ConnectionError`` on the ``fail_on``-th save or open (1-based).

    The counters are per instance; Django builds one instance per alias, so
    ``override_settings(STORAGES=...)`` gives each test fresh counts.
    """

    def __init__(self, *, fail_save_on: int = 0, fail_open_on: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_save_on = fail_save_on
        self.fail_open_on = fail_open_on
        self.saves = 0
        self.opens = 0
        self._lock = threading.Lock()

    def _save(self, name: str, content: Any) -> str:
        with self._lock:
            self.saves += 1
            failing = self.saves == self.fail_save_on
        if failing:
            raise ConnectionError(f"injected failure on save #{self.saves}")
        return super()._save(name, content)

    def _open(self, name: str, mode: str = "rb") -> Any:
        with self._lock:
            self.opens += 1
            failing = self.opens == self.fail_open_on
        if failing:
            raise ConnectionError(f"injected failure on open #{self.opens}")
        return super()._open(name, mode)
