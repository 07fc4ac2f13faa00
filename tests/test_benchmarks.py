"""The benchmark's own machinery: the body-cutting proxy, targets and medians.

``make bench QUICK=1`` runs the whole harness in CI; these check the parts
whose mistakes would not show as a crash there but as wrong figures: a proxy
that cuts too many, too few or the wrong bodies, a target that passes when
it should not, a ratio that is not the median of the per-run ratios.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.faultproxy import CuttingProxy
from benchmarks.harness import Sample, rotated
from benchmarks.report import CORRECTNESS, COUNT, MEASURE, Check, rst
from benchmarks.run import parse_args
from benchmarks.sweep import Results
from chunkfiles.conf import DEFAULTS
from testproject.seaweed import SeaweedS3
from tests.processes import ROOT

BUCKET = "bench-tests"
BODY = 256 * 1024


@pytest.fixture(scope="module")
def bucket(seaweed: SeaweedS3) -> str:
    seaweed.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture
def proxy(seaweed: SeaweedS3, bucket: str) -> Iterator[CuttingProxy]:
    with CuttingProxy("127.0.0.1", seaweed.port) as p:
        yield p


@pytest.fixture
def client(seaweed: SeaweedS3, proxy: CuttingProxy) -> Iterator[Any]:
    import boto3
    from botocore.config import Config

    c = boto3.client(
        "s3",
        endpoint_url=proxy.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="us-east-1",
        # One attempt: every cut must reach the test, not be retried away.
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    yield c
    c.close()


def _get(client: Any, key: str) -> bytes | None:
    """The object's bytes, or None if its body broke."""
    from botocore.exceptions import BotoCoreError

    try:
        return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    except BotoCoreError:
        return None


def _cut_matching(method: str, target: str) -> bool:
    return method == "GET" and "victim" in target


class TestCuttingProxy:
    def test_cuts_a_matching_body_mid_stream_and_counts_it(
        self, proxy: CuttingProxy, client: Any
    ) -> None:
        data = os.urandom(BODY)
        client.put_object(Bucket=BUCKET, Key="victim", Body=data)
        client.put_object(Bucket=BUCKET, Key="bystander", Body=data)
        proxy.reset_counts()
        proxy.cut_bodies(1.0, _cut_matching, seed=1, min_bytes=4096, max_bytes=BODY // 2)
        assert _get(client, "victim") is None
        assert _get(client, "bystander") == data  # not matched: never cut
        assert proxy.cuts == 1
        assert proxy.counts()["GET"] == 2
        proxy.heal()
        assert _get(client, "victim") == data
        assert proxy.cuts == 1
        proxy.reset_counts()
        assert proxy.cuts == 0

    def test_a_seed_decides_which_requests_are_cut(self, proxy: CuttingProxy, client: Any) -> None:
        client.put_object(Bucket=BUCKET, Key="victim", Body=os.urandom(BODY))

        def pattern(seed: int) -> list[bool]:
            proxy.cut_bodies(0.3, _cut_matching, seed=seed, min_bytes=4096, max_bytes=8192)
            try:
                return [_get(client, "victim") is None for _ in range(30)]
            finally:
                proxy.heal()

        first = pattern(7)
        assert first == pattern(7)
        assert 0 < sum(first) < 30  # some cut, some not: a rate, not all or nothing
        assert first != pattern(8)


def _sample(seconds: float, gets: int = 0, rss: int = 0) -> Sample:
    return Sample(seconds, rss, {"GET": gets} if gets else {}, {})


class TestResults:
    def test_a_ratio_is_the_median_of_per_run_ratios(self) -> None:
        # Run 2 is slow for both sides: its ratio is still 1.
        runs: list[dict[int, dict[str, Sample | None]]] = [
            {8: {"a": _sample(1.0), "b": _sample(2.0)}},
            {8: {"a": _sample(10.0), "b": _sample(10.0)}},
            {8: {"a": _sample(1.5), "b": _sample(1.0)}},
        ]
        results = Results(runs, file_size=64)
        assert results.ratio(8, "a", "b") == 1.0
        assert results.seconds(8, "a") == 1.5

    def test_failed_variants_are_left_out_and_none_when_all_failed(self) -> None:
        runs: list[dict[int, dict[str, Sample | None]]] = [
            {4: {"a": _sample(1.0, gets=16), "b": None}},
            {4: {"a": _sample(3.0, gets=17), "b": _sample(1.0)}},
        ]
        results = Results(runs, file_size=64)
        assert results.ratio(4, "a", "b") == 3.0
        assert results.per_blob(4, "a", "GET") == pytest.approx(16.5 / 16)
        assert results.seconds(4, "missing") is None


class TestCheck:
    def test_pass_miss_and_kinds(self) -> None:
        assert Check("t", 0.9, "<=", 0.9).passed
        assert not Check("t", 0.91, "<=", 0.9).passed
        assert not Check("t", None, "<=", 0.9).passed  # what it needs failed
        assert Check("t", 1.2, "<=", 1.1).cells()[-1] == "MISS"
        assert Check("t", 2, "==", 1, "", kind=COUNT).cells()[-1] == "MISS (count)"
        assert Check("t", 0, "==", 1, "", CORRECTNESS).cells()[-1] == "MISS (correctness)"
        assert Check("t", 1, "==", 1, "", COUNT).cells() == ["t", "1", "== 1", "PASS"]
        assert Check("t", 1.0, "<", 2).kind == MEASURE

    def test_rst_table_columns_fit_the_widest_cell(self) -> None:
        text = rst(["a", "bb"], [["long cell", "x"]])
        rule, header, _, row, _ = text.splitlines()
        assert rule == "=========  =="
        assert header == "a          bb"
        assert row == "long cell  x"


class TestArguments:
    def test_quick_changes_only_defaults(self) -> None:
        quick = parse_args(["--quick"])
        assert (quick.size_mib, quick.blob_sizes, quick.runs) == (32, [1, 8], 1)
        assert parse_args(["--quick", "--runs", "2"]).runs == 2
        full = parse_args([])
        assert (full.size_mib, full.blob_sizes, full.runs) == (128, [1, 2, 4, 8, 16], 3)
        assert full.default_blob_size == DEFAULTS["BLOB_SIZE"]  # what users get
        assert parse_args(["--big"]).suites == ["big"]

    def test_rotation_changes_the_order_each_run(self) -> None:
        assert rotated(["a", "b", "c"], 4) == ["b", "c", "a"]
        assert rotated([], 3) == []


class TestCelerySuite:
    def test_a_tiny_run_reports_every_row_and_every_file_done(self, tmp_path: Any) -> None:
        # The whole suite in its own process, as `make bench-celery` runs it:
        # its own database, SeaweedFS and two workers. Timings are not checked.
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("CHUNKFILES_")
        }
        run = subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.run", "--suites", "celery"),
                *("--celery-files", "60", "--celery-batch", "20", "--runs", "1"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        report = run.stdout
        assert "Bulk jobs on Celery: 60 files of two 1 KiB blobs, batches of 20" in report
        for job in ("verify", "export"):
            for where in ("one process", "1 worker", "2 workers"):
                assert re.search(rf"^{job} +{where} +[\d.]+ +[\d.]+$", report, re.M), (job, where)
            assert re.search(rf"^{job}: speed-up of 2 workers over 1 +[\d.]+x", report, re.M)
        # The correctness checks count every file (and every exported object) of every variant.
        assert re.search(r"^verify: files checked, no problem .* 60 +== 60 +PASS$", report, re.M)
        assert re.search(
            r"^export: objects written with the right size .* 60 +== 60 +PASS$", report, re.M
        )
        assert "0 correctness; 0 crashed variant(s)" in report
        # Both workers took batches: the 2-worker rows really ran on two processes.
        assert re.search(r"w0: export_files \d+, verify_files \d+; w1: export_files \d+", report)
