"""The benchmark runs end to end in its tiny mode, so it cannot rot. It asserts behaviour, not speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from config.settings import ROOT

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make test-bench installs it)"),
]


def test_tiny_benchmark_prints_its_table_and_loses_nothing():
    before = set((ROOT / "bench" / "results").glob("*.json"))
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench", "--tiny", "--concurrency", "1,4", "--log-docs", "2000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for needle in ("vs mlflow", "batches of 1,000 rows", "/statistics over", "lost 0"):
        assert needle in result.stdout, needle
    written = set((ROOT / "bench" / "results").glob("*.json")) - before
    assert len(written) == 1
    data = json.loads(written.pop().read_text())
    assert {"ours@1", "mlflow@1", "ours_nolog@1", "ours@4"} <= set(data["summary"])
    assert data["log_check"]["lost"] == 0 and data["log_check"]["served"] > 0
    assert all(row["errors"] == 0 for row in data["summary"].values())
    assert data["batch_1000"]["errors"] == 0 and data["batch_1000"]["rows_per_s"] > 0


def test_tiny_table_benchmark_serves_compiled_and_logs_every_batch_row():
    before = set((ROOT / "bench" / "results").glob("tables-*.json"))
    result = subprocess.run(
        [sys.executable, "-m", "bench.tables", "--tiny", "--batch-rows", "12000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "mlflow models serve" in result.stdout and "rows/s end to end" in result.stdout
    written = set((ROOT / "bench" / "results").glob("tables-*.json")) - before
    data = json.loads(written.pop().read_text())
    assert data["serving"]["engine"] == "onnxruntime", data["serving"]
    assert {"ours@1", "mlflow@1", "ours@16", "mlflow@16"} == set(data["summary"])
    assert all(row["errors"] == 0 for row in data["summary"].values())
    assert data["batch"] | {"seconds": 0, "rows_per_s": 0, "file_mb": 0} == {
        "rows": 12000,
        "stored": 12000,
        "lost": 0,
        "status": "succeeded",
        "seconds": 0,
        "rows_per_s": 0,
        "file_mb": 0,
    }
