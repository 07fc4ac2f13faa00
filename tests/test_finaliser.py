"""Readers left to the cyclic GC never hang the process (issue 7, point 2).

A read-ahead reader whose ``read()`` raised and that was never closed sits in
a reference cycle (the exception's traceback holds the frames that hold the
reader). When the cyclic GC finalises it while a thread is starting, a
finaliser that joins threads needs a lock ``threading`` already holds, and
the process hangs. The script below makes 1,500 such readers with frequent
collections, in a fresh interpreter (a hang must not take pytest with it)
whose ``faulthandler`` watchdog dumps every stack and exits 1 after 60 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

READERS = 1500
WATCHDOG = 60

SCRIPT = r"""
import faulthandler, gc, hashlib, sys, threading, time, weakref

faulthandler.dump_traceback_later(float(sys.argv[2]), exit=True)

import django
from django.conf import settings

settings.configure(CHUNKFILES={"CLOSE_TIMEOUT": 2, "ATTEMPTS": 1})
django.setup()

from chunkfiles.exceptions import BlobReadError
from chunkfiles.reader import open_refs
from chunkfiles.refs import BlobRef

READERS = int(sys.argv[1])
BLOB, BLOBS, BAD = 64, 8, 3
blobs = [bytes([i]) * BLOB for i in range(BLOBS)]
refs = [
    BlobRef(i * BLOB, BLOB, hashlib.sha256(b).hexdigest(), f"b/{i}") for i, b in enumerate(blobs)
]


def fetch(ref):
    i = ref.offset // BLOB
    if i == BAD:
        raise ConnectionResetError("injected")
    if i > BAD:
        time.sleep(0.0005)  # some fetches are still running when the reader is finalised
    return blobs[i]


# Collections every few hundred allocations: many land while a worker thread starts.
gc.set_threshold(100, 5, 5)
refs_alive = []
raised = 0
for _ in range(READERS):
    reader = open_refs(refs, fetch=fetch, readahead=4)
    try:
        reader.read()
    except BlobReadError as exc:
        raised += 1
        reader.error = exc  # traceback -> read() frames -> reader: a cycle
    reader.cycle = reader
    refs_alive.append(weakref.ref(reader))
    del reader
by_gc = sum(r() is None for r in refs_alive)
gc.collect()
left = sum(r() is not None for r in refs_alive)

# Finalised readers cancel and let go; their idle workers exit on their own.
end = time.monotonic() + 20
while time.monotonic() < end:
    workers = [t for t in threading.enumerate() if t.name.startswith("chunkfiles-")]
    if not workers:
        break
    time.sleep(0.05)
print(f"raised={raised} by_gc={by_gc} left={left} workers={len(workers)}")
print("FINALISED", READERS)
"""


class TestUnclosedReadersCollectedByGC:
    def test_1500_readers_finalised_during_thread_starts_do_not_hang(self) -> None:
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(READERS), str(WATCHDOG)],
            capture_output=True,
            text=True,
            timeout=WATCHDOG + 30,
            cwd=Path(__file__).resolve().parent.parent,
        )
        elapsed = time.monotonic() - start
        report = f"exit {done.returncode} after {elapsed:.1f} s\n{done.stdout}\n{done.stderr}"
        assert done.returncode == 0, report  # the watchdog exits 1 with every stack dumped
        assert f"FINALISED {READERS}" in done.stdout, report
        counts = re.search(r"raised=(\d+) by_gc=(\d+) left=(\d+) workers=(\d+)", done.stdout)
        assert counts is not None, report
        raised, by_gc, left, workers = map(int, counts.groups())
        assert raised == READERS  # every reader had a failed read()
        assert by_gc >= READERS // 2  # the automatic GC, not our final collect, did most
        assert left == 0
        assert workers == 0  # no worker thread outlived its reader for long
        assert elapsed < WATCHDOG
