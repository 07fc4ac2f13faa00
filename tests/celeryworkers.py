"""Celery worker processes for the tests: ``testproject.celeryworkers`` sharing the test's settings.

Started with ``tests.processes.child_env``, so every worker sees the test's
database and storages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testproject.celeryworkers import RABBITMQ, REDIS, VISIBILITY
from testproject.celeryworkers import Workers as _Workers
from tests.processes import child_env

__all__ = ["RABBITMQ", "REDIS", "VISIBILITY", "Workers"]


class Workers(_Workers):
    """``count`` worker processes on one broker that share the test's database and storages."""

    def __init__(
        self,
        broker: str,
        count: int,
        logs: Path,
        visibility: float = VISIBILITY,
        storages: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(broker, count, logs, child_env(), visibility, storages)
