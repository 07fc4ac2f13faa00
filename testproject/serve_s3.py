"""``make demo S3=1``: the demo against a SeaweedFS S3 server started for it.

SeaweedFS keeps its data in ``var/s3/`` next to the demo's own SQLite file,
so a second run finds the sample files again. Ctrl-C stops both servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testproject.seaweed import SeaweedS3

BUCKET = "chunkfiles-demo"


def main() -> int:
    var = Path(__file__).resolve().parent.parent / "var" / "s3"
    (var / "weed").mkdir(parents=True, exist_ok=True)
    with SeaweedS3(workdir=str(var / "weed")) as server:
        server.create_bucket(BUCKET)
        env = dict(
            os.environ,
            CHUNKFILES_VAR_DIR=str(var),
            CHUNKFILES_S3_ENDPOINT=server.endpoint_url,
            CHUNKFILES_S3_BUCKET=BUCKET,
            CHUNKFILES_S3_ACCESS_KEY=server.access_key,
            CHUNKFILES_S3_SECRET_KEY=server.secret_key,
        )
        print(f"SeaweedFS S3 at {server.endpoint_url}, bucket {BUCKET}", flush=True)
        steps = [
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            [sys.executable, "-m", "testproject.demo"],
        ]
        for step in steps:
            subprocess.run(step, env=env, check=True)
        try:
            return subprocess.call(
                [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:8000"], env=env
            )
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
