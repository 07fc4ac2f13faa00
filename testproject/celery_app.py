"""The test project's Celery app, as a Django project sets one up.

Broker and result backend come from ``CHUNKFILES_CELERY_BROKER`` and
``CHUNKFILES_CELERY_BACKEND`` (default: the Redis server on 127.0.0.1:6379).
``CHUNKFILES_SETTINGS_JSON`` may override Django settings before Django
starts: the tests use it to point worker processes at the test database and
at the storages of the test that started them. Start a worker with::

    celery -A testproject.celery_app worker -P solo
"""

from __future__ import annotations

import json
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")


def _override_settings() -> None:
    overrides = json.loads(os.environ.get("CHUNKFILES_SETTINGS_JSON") or "{}")
    if not overrides:
        return
    from django.conf import settings

    for alias, name in overrides.pop("DATABASE_NAMES", {}).items():
        settings.DATABASES[alias]["NAME"] = name
    for key, value in overrides.items():
        setattr(settings, key, value)


_override_settings()

REDIS = "redis://127.0.0.1:6379/0"


def make_app(broker: str | None = None, queue: str | None = None) -> Celery:
    """A Celery app for this project; the environment gives what is not passed."""
    env = os.environ.get
    visibility = float(env("CHUNKFILES_CELERY_VISIBILITY", 3600))
    app = Celery("testproject")
    app.conf.update(
        broker_url=broker or env("CHUNKFILES_CELERY_BROKER", REDIS),
        result_backend=env("CHUNKFILES_CELERY_BACKEND", REDIS),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # One batch at a time per worker process: with acks_late, a prefetched
        # batch would wait behind a long one instead of going to an idle worker.
        worker_prefetch_multiplier=1,
        # Redis redelivers a batch whose worker died (unacknowledged) after this
        # many seconds; keep it above the longest batch (the default is an hour).
        # The tests use a few seconds, and have workers look for such batches
        # every second (by default kombu looks every 10 s, and only every 10th time).
        broker_transport_options={
            "visibility_timeout": visibility,
            "unacked_restore_interval": 1 if visibility < 60 else 10,
            "unacked_restore_throttle": 1 if visibility < 60 else 10,
        },
        result_expires=3600,
        # Lets test runs share the Redis and RabbitMQ servers without taking each other's tasks.
        task_default_queue=queue or env("CHUNKFILES_CELERY_QUEUE", "celery"),
        broker_connection_retry_on_startup=True,
    )
    app.autodiscover_tasks(["chunkfiles"])
    return app


app = make_app()
