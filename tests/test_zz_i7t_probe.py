import time
import pytest
from botocore.exceptions import IncompleteReadError
from chunkfiles import s3
from tests.test_fault_runs import TestReadsWithBodiesCutMidStream  # noqa

def _read_body(body, view, deadline):
    raw = body._raw_stream
    filled = 0
    while filled < len(view):
        if time.monotonic() > deadline:
            raise TimeoutError(f"deadline passed after {filled} of {len(view)} body bytes")
        chunk = raw.read1(min(s3.BODY_CHUNK, len(view) - filled))
        if not chunk:
            raise IncompleteReadError(actual_bytes=filled, expected_bytes=len(view))
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if raw.read(1):
        raise IncompleteReadError(actual_bytes=filled + 1, expected_bytes=len(view))

@pytest.fixture(autouse=True)
def patched(monkeypatch):
    monkeypatch.setattr(s3, "_read_body", _read_body)
