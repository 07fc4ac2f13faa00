"""Helpers for tests that run chunkfiles in other processes (a killed move, Celery workers).

Another process sees what the test sees through ``CHUNKFILES_SETTINGS_JSON``:
the test database's real name (conftest keeps SQLite's in a file) and the
``STORAGES``/``CHUNKFILES`` the test overrode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent

#: Applies CHUNKFILES_SETTINGS_JSON, then runs a management command (argv[1:]).
COMMAND_SCRIPT = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
from django.conf import settings
overrides = json.loads(os.environ["CHUNKFILES_SETTINGS_JSON"])
for alias, name in overrides.pop("DATABASE_NAMES").items():
    settings.DATABASES[alias]["NAME"] = name
for key, value in overrides.items():
    setattr(settings, key, value)
import django
django.setup()
from django.core.management import call_command
call_command(*sys.argv[1:])
"""


def settings_json() -> str:
    """The settings another process needs to share this test's database and storages."""
    names = {"default": connections["default"].settings_dict["NAME"]}
    overrides: dict[str, Any] = {
        "DATABASE_NAMES": names,
        "STORAGES": settings.STORAGES,
        "CHUNKFILES": settings.CHUNKFILES,
    }
    return json.dumps(overrides, default=str)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, plus the shared settings."""
    env = {**os.environ, "CHUNKFILES_SETTINGS_JSON": settings_json(), **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_command(*argv: str) -> subprocess.Popen[bytes]:
    """``manage.py`` ``argv`` in a child process that sees this test's settings."""
    return subprocess.Popen(
        [sys.executable, "-c", COMMAND_SCRIPT, *argv],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
