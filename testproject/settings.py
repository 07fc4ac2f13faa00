"""Settings for the demo (``make demo``) and the test suite.

The database comes from ``CHUNKFILES_DB`` (sqlite, postgresql, mariadb);
blobs go to the filesystem unless ``CHUNKFILES_S3_ENDPOINT`` names an S3
server (``make demo S3=1`` starts a local SeaweedFS and sets it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHUNKFILES_VAR_DIR", BASE_DIR / "var"))
# SQLite creates its file but not the directory; every manage.py command needs it.
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-key-for-the-demo-and-tests-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chunkfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database(kind: str) -> dict[str, Any]:
    if kind == "sqlite":
        database: dict[str, Any] = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "demo.sqlite3",
        }
        if django.VERSION >= (5, 1):
            # Writers (the demo's threads, Celery worker processes) queue for the
            # write lock when a transaction starts, for up to 20 s, instead of
            # failing with "database is locked" when a reader upgrades mid-way.
            database["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
        return database
    if kind == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "chunkfiles",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    if kind == "mariadb":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "chunkfiles",
            "USER": "root",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    raise ValueError(f"CHUNKFILES_DB must be sqlite, postgresql or mariadb, not {kind!r}")


DB_KIND = os.environ.get("CHUNKFILES_DB", "sqlite")
DATABASES = {"default": _database(DB_KIND)}
# A second database of the same kind, used by the router tests.
DATABASES["files"] = {
    **_database(DB_KIND),
    "NAME": (VAR_DIR / "files.sqlite3" if DB_KIND == "sqlite" else "chunkfiles_files"),
}
DATABASES["files"]["TEST"] = {**DATABASES["files"].get("TEST", {}), "DEPENDENCIES": []}
# The default database again, for tests that put a fault-injecting proxy
# between Django and the server (they point this connection at the proxy).
if DB_KIND != "sqlite":
    DATABASES["proxied"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
# Lets several test runs share one PostgreSQL/MariaDB server without
# dropping each other's test databases (e.g. CHUNKFILES_TEST_DB_SUFFIX=_a).
_SUFFIX = os.environ.get("CHUNKFILES_TEST_DB_SUFFIX", "")
if _SUFFIX and DB_KIND != "sqlite":
    for _alias, _db in DATABASES.items():
        _db["TEST"] = {**_db.get("TEST", {}), "NAME": f"test_{_db['NAME']}{_SUFFIX}"}

MEDIA_ROOT = Path(os.environ.get("CHUNKFILES_MEDIA_ROOT", VAR_DIR / "media"))
STATIC_URL = "static/"
STORAGES: dict[str, Any] = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CHUNKFILES: dict[str, Any] = {"STORAGE": "default"}

if os.environ.get("CHUNKFILES_S3_ENDPOINT"):
    STORAGES["blobs"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("CHUNKFILES_S3_BUCKET", "chunkfiles"),
            "endpoint_url": os.environ["CHUNKFILES_S3_ENDPOINT"],
            "access_key": os.environ.get("CHUNKFILES_S3_ACCESS_KEY"),
            "secret_key": os.environ.get("CHUNKFILES_S3_SECRET_KEY"),
            "region_name": "us-east-1",
            "addressing_style": "path",
        },
    }
    CHUNKFILES["STORAGE"] = "blobs"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chunkfiles": {"handlers": ["console"], "level": "WARNING"}},
}
