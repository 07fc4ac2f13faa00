"""System checks: catch a broken CHUNKFILES / STORAGES setting at startup."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, chunkfiles_settings

#: S3 refuses a single PUT above 5 GiB.
MAX_BLOB_SIZE = 5 * 1024**3


def _positive_int(name: str, id: str, hint: str) -> list[checks.CheckMessage]:
    value = getattr(chunkfiles_settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [
            checks.Error(
                f"CHUNKFILES['{name}'] must be a positive integer, not {value!r}.", hint=hint, id=id
            )
        ]
    return []


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Validate ``settings.CHUNKFILES`` and the storage it names."""
    errors: list[checks.CheckMessage] = []
    unknown = sorted(set(chunkfiles_settings.user_settings) - set(DEFAULTS))
    if unknown:
        errors.append(
            checks.Warning(
                f"Unknown CHUNKFILES keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="chunkfiles.W001",
            )
        )
    alias = chunkfiles_settings.STORAGE
    storages_setting = chunkfiles_settings.storages_setting
    if alias not in storages_setting:
        errors.append(
            checks.Error(
                f"CHUNKFILES['STORAGE'] is {alias!r}, which is not an alias in STORAGES.",
                hint=f"Add STORAGES[{alias!r}] or use one of: {', '.join(storages_setting)}.",
                id="chunkfiles.E001",
            )
        )
    else:
        errors += _check_backend(alias, storages_setting[alias])
    errors += _positive_int("BLOB_SIZE", "chunkfiles.E002", "1048576 (1 MiB) is a good default.")
    size = chunkfiles_settings.BLOB_SIZE
    if isinstance(size, int) and size > MAX_BLOB_SIZE:
        errors.append(
            checks.Error(
                f"CHUNKFILES['BLOB_SIZE'] is {size}; S3 refuses single writes over 5 GiB.",
                id="chunkfiles.E003",
            )
        )
    elif isinstance(size, int) and size > 64 * 1024**2:
        errors.append(
            checks.Warning(
                f"CHUNKFILES['BLOB_SIZE'] is {size} bytes; each worker holds a blob in memory.",
                hint="Blobs of 1-16 MiB keep memory bounded and requests efficient.",
                id="chunkfiles.W002",
            )
        )
    for name in ("UPLOAD_WORKERS", "PREFETCH_WORKERS", "READAHEAD"):
        errors += _positive_int(name, "chunkfiles.E004", "Use a small positive number, e.g. 8-32.")
        value = getattr(chunkfiles_settings, name)
        if isinstance(value, int) and value > 256:
            errors.append(
                checks.Warning(
                    f"CHUNKFILES['{name}'] is {value}; that many threads per read or upload "
                    "exhausts connections and memory.",
                    id="chunkfiles.W003",
                )
            )
    prefix = chunkfiles_settings.BLOB_PREFIX
    if not isinstance(prefix, str) or prefix.startswith("/") or ".." in prefix.split("/"):
        errors.append(
            checks.Error(
                f"CHUNKFILES['BLOB_PREFIX'] must be a relative storage path, not {prefix!r}.",
                id="chunkfiles.E005",
            )
        )
    return errors


def _check_backend(alias: str, config: dict[str, Any]) -> list[checks.CheckMessage]:
    backend = config.get("BACKEND", "")
    try:
        cls = import_string(backend)
    except ImportError as exc:
        return [
            checks.Error(
                f"STORAGES[{alias!r}]['BACKEND'] cannot be imported: {exc}.",
                hint="pip install 'django-chunkfiles[s3]' for the S3 backend.",
                id="chunkfiles.E006",
            )
        ]
    from .s3 import is_s3_storage_class

    if is_s3_storage_class(cls):
        options = config.get("OPTIONS", {})
        # django-storages falls back to AWS_STORAGE_BUCKET_NAME.
        if not (
            options.get("bucket_name")
            or getattr(cls, "bucket_name", None)
            or chunkfiles_settings.django_setting("AWS_STORAGE_BUCKET_NAME")
        ):
            return [
                checks.Error(
                    f"STORAGES[{alias!r}] is an S3 storage without a bucket.",
                    hint="Set OPTIONS['bucket_name'] (or AWS_STORAGE_BUCKET_NAME).",
                    id="chunkfiles.E007",
                )
            ]
    return []


def register() -> None:
    checks.register(check_settings)
