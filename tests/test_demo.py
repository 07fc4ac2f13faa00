"""``python -m testproject.demo --serve``: samples stored, the URL it really serves printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_serves_on_a_free_port_and_prints_its_url(tmp_path: Path) -> None:
    # SQLite in a private directory whatever database the suite runs on.
    env = {**os.environ, "CHUNKFILES_DB": "sqlite", "CHUNKFILES_VAR_DIR": str(tmp_path)}
    env.pop("CHUNKFILES_S3_ENDPOINT", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "testproject.demo", "--serve", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line, f"demo exited early: {lines}"
            lines.append(line)
            match = re.search(r"Admin: (http://127\.0\.0\.1:(\d+)/admin/)", line)
            if match:
                url = match.group(1)
                assert match.group(2) != "0"
        assert url, lines
        assert any(line.startswith("stored  random.bin") for line in lines)
        with urllib.request.urlopen(url + "login/", timeout=10) as response:
            assert response.status == 200
            assert b"id_username" in response.read()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
