"""The pipeline timing script runs ingest -> train -> validate and prints each step's seconds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from config.settings import ROOT

pytestmark = pytest.mark.bench


def test_pipeline_benchmark_prints_step_times():
    result = subprocess.run(
        [sys.executable, "-m", "bench.pipeline"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for step in ("ingest", "train", "validate", "total"):
        assert re.search(rf"^{step}\s+[\d.]+ s", result.stdout, re.M), step
    assert "promoted" in result.stdout
