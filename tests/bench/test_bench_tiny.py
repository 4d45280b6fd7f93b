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


def run_tiny(module: str, prefix: str, *args: str) -> tuple[str, dict]:
    """Run `python -m <module> --tiny <args>`; its stdout and the one results file it wrote."""
    before = set((ROOT / "bench" / "results").glob(f"{prefix}-*.json"))
    result = subprocess.run(
        [sys.executable, "-m", module, "--tiny", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    written = set((ROOT / "bench" / "results").glob(f"{prefix}-*.json")) - before
    assert len(written) == 1
    return result.stdout, json.loads(written.pop().read_text())


def test_tiny_benchmark_prints_its_table_and_loses_nothing():
    stdout, data = run_tiny("bench.bench", "bench", "--concurrency", "1,4", "--log-docs", "2000")
    for needle in ("vs mlflow", "batches of 1,000 rows", "one uploaded digit a request", "/statistics over", "lost 0"):
        assert needle in stdout, needle
    assert {"ours@1", "mlflow@1", "ours_nolog@1", "ours@4"} <= set(data["summary"])
    assert data["log_check"]["lost"] == 0 and data["log_check"]["served"] > 0
    assert all(row["errors"] == 0 for row in data["summary"].values())
    assert data["batch_1000"]["errors"] == 0 and data["batch_1000"]["rows_per_s"] > 0
    assert [u["layout"][:5] for u in data["uploads"]] == ["8x8 (", "16x16"]  # the default model's layout too
    assert all(u["errors"] == 0 and u["rps"] > 0 for u in data["uploads"])
    # the upload's own cost: the same digit as a row of 256 numbers to the same model, served without errors
    assert data["upload_row_16"]["errors"] == 0 and data["upload_row_16"]["p50_ms"] > 0
    assert "the upload's own cost" in stdout


def test_tiny_table_benchmark_serves_compiled_and_logs_every_batch_row():
    stdout, data = run_tiny("bench.tables", "tables", "--batch-rows", "12000")
    assert "mlflow models serve" in stdout and "rows/s end to end" in stdout
    assert data["serving"]["engine"] == "onnxruntime", data["serving"]
    assert data["regressor_serving"]["engine"] == "onnxruntime", data["regressor_serving"]
    assert {f"{target}@{c}" for target in ("ours", "mlflow", "regressor") for c in (1, 16)} == set(data["summary"])
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


def test_tiny_photo_benchmark_serves_the_backbone_and_logs_every_photo():
    stdout, data = run_tiny("bench.photos", "photos")
    assert "one 600x400 JPEG" in stdout and "photos/s end to end" in stdout
    assert data["serving"]["engine"] == "onnxruntime" and data["champion"]["outcome"] == "promoted"
    assert all(row["errors"] == 0 for row in data["summary"].values())
    assert data["batch"]["status"] == "succeeded" and data["batch"]["lost"] == 0 and data["batch"]["photos"] == 20
