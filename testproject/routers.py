"""A router that keeps chunkfiles' tables on their own database alias."""

from __future__ import annotations

from typing import Any


class ChunkfilesRouter:
    alias = "files"

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return self.alias if model._meta.app_label == "chunkfiles" else None  # type: ignore[attr-defined]

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return None
