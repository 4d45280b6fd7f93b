"""The OpenAPI document drives schemathesis against the app under gunicorn: no 5xx, responses match it."""

from __future__ import annotations

import re
import subprocess

from ops import services

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_generated_requests_find_no_server_error(served_app, tmp_path):
    result = subprocess.run(
        [
            str(services.BIN / "schemathesis"), "run", f"{served_app.url}/openapi.json",
            "--checks", CHECKS, "--max-examples", "40", "--seed", "1", "--request-timeout", "20", "--no-color",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out of the tree
    )  # fmt: skip
    match = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    print(f"\nschemathesis: {match.group(0) if match else result.stdout[-500:]}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert match, result.stdout[-2000:]
    generated, passed = int(match.group(1)), int(match.group(2))
    assert generated >= 240, f"only {generated} generated requests"
    assert passed == generated
