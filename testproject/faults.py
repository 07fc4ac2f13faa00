"""A storage that fails on purpose, for tests of error handling and cleanup."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from django.core.files.storage import FileSystemStorage


class FlakyFileSystemStorage(FileSystemStorage):
    """A filesystem storage that fails like a dropped connection (``ConnectionError``).

    - ``fail_save_on``: the N-th save (1-based) fails;
    - ``fail_saves_from``: every save from the N-th on fails;
    - ``fail_names``: opening any of these names fails;
    - ``fail_from_call``: every open from the N-th on fails;
    - ``stall_from_call``: every open from the N-th on first sleeps
      ``stall_seconds`` (a storage that stops answering: a process stuck
      mid-job, for tests that kill it there).

    The counters are per instance; Django builds one instance per alias, so
    ``override_settings(STORAGES=...)`` gives each test fresh counts.
    """

    def __init__(
        self,
        *,
        fail_save_on: int = 0,
        fail_saves_from: int = 0,
        fail_names: Iterable[str] = (),
        fail_from_call: int = 0,
        stall_from_call: int = 0,
        stall_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fail_save_on = fail_save_on
        self.fail_saves_from = fail_saves_from
        self.fail_names = set(fail_names)
        self.fail_from_call = fail_from_call
        self.stall_from_call = stall_from_call
        self.stall_seconds = stall_seconds
        self.saves = 0
        self.opens = 0
        self._lock = threading.Lock()

    def _save(self, name: str, content: Any) -> str:
        with self._lock:
            self.saves += 1
            save = self.saves
        if save == self.fail_save_on or 0 < self.fail_saves_from <= save:
            raise ConnectionError(f"injected failure on save #{save}")
        return super()._save(name, content)

    def open(self, name: str, mode: str = "rb") -> Any:
        with self._lock:
            self.opens += 1
            call = self.opens
        if 0 < self.stall_from_call <= call:
            time.sleep(self.stall_seconds)
        if name in self.fail_names or 0 < self.fail_from_call <= call:
            raise ConnectionError(f"connection reset while opening {name} (call {call})")
        return super().open(name, mode)
