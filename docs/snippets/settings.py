# django-chunkfiles
INSTALLED_APPS += ["chunkfiles"]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # Where the blobs live: a directory for now, a bucket later (see "Growing").
    "blobs": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": BASE_DIR / "blobs"},
    },
}

CHUNKFILES = {"STORAGE": "blobs"}
