from __future__ import annotations

from django.apps import AppConfig


class ChunkfilesConfig(AppConfig):
    name = "chunkfiles"
    verbose_name = "Chunked files"
    # Sizes and offsets are 64-bit; so are the ids, because blob counts grow fast.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks

        checks.register()
