"""``make demo S3=1``: the demo against a SeaweedFS S3 server started for it.

SeaweedFS keeps its data in ``var/s3/`` next to the demo's own SQLite file,
so a second run finds the sample files again. Ctrl-C stops both servers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from testproject.seaweed import SeaweedS3

BUCKET = "chunkfiles-demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo against a local SeaweedFS S3.")
    parser.add_argument("--port", type=int, default=8000, help="admin port (0: any free one)")
    port = parser.parse_args(argv).port
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
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"], env=env, check=True
        )
        try:
            # Stores the samples, then serves and prints the URL it listens on.
            return subprocess.call(
                [sys.executable, "-m", "testproject.demo", "--serve", f"127.0.0.1:{port}"],
                env=env,
            )
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
