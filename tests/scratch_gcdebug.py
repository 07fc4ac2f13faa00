import threading
import pytest
from django.db import IntegrityError
from django.db.models.query import QuerySet
from chunkfiles import writer as w, commit as c
from tests.test_gc_race import TestCollectWhileUploading, pytestmark  # noqa

orig = w.BlobWriter.save_rows
orig_bc = QuerySet.bulk_create
orig_retryable = c.retryable

def tag():
    return threading.current_thread().name

def save_rows(self):
    try:
        return orig(self)
    except w.VanishedError as e:
        print("EV", tag(), "vanished", [x[:6] for x in e.checksums], flush=True)
        raise

def bulk_create(self, *a, **k):
    try:
        return orig_bc(self, *a, **k)
    except IntegrityError as e:
        print("EV", tag(), "integrity", self.model.__name__, e, flush=True)
        raise

def retryable(error):
    r = orig_retryable(error)
    print("EV", tag(), "dberror", r, error, flush=True)
    return r

@pytest.fixture(autouse=True)
def patch(monkeypatch):
    monkeypatch.setattr(w.BlobWriter, "save_rows", save_rows)
    monkeypatch.setattr(QuerySet, "bulk_create", bulk_create)
    monkeypatch.setattr(c, "retryable", retryable)

import os, time
import tests.test_gc_race as race

@pytest.fixture(autouse=True)
def nogc(monkeypatch):
    if os.environ.get("NOGC"):
        real = race.gc
        calls = []
        def fake(*a):
            if race.threading.active_count() > 2:
                time.sleep(0.05); return 1
            return real(*a)
        monkeypatch.setattr(race, "gc", fake)
