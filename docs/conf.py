"""Sphinx configuration of the django-chunkfiles documentation (``make docs``).

The docs import the package from this checkout inside a minimal Django
configuration, because autodoc, the settings reference and the command
reference all read the code itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

settings.configure(
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.messages",
        "django.contrib.sessions",
        "chunkfiles",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()

import chunkfiles  # noqa: E402  (needs the settings above)

project = "django-chunkfiles"
author = "the django-chunkfiles contributors"
copyright = f"2026, {author}"
version = release = chunkfiles.__version__

extensions = ["sphinx.ext.autodoc", "chunkfiles_docs"]
exclude_patterns = ["_build", "snippets"]
root_doc = "index"
# Option names such as --output must not become en dashes.
smartquotes = False

# Optional dependencies that the API pages must not need (celery is an extra).
autodoc_mock_imports = ["celery"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_default_options = {"show-inheritance": False}
# A type hint naming a class that two modules define (several services have a
# ``Problem``) links to one of them; that is no reason to fail the build.
suppress_warnings = ["ref.python"]

html_theme = "furo"
html_title = f"django-chunkfiles {release}"
html_static_path: list[str] = []
