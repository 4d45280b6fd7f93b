"""Secrets stay out of the repository; limits and tokens are enforced."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from config.settings import ROOT, Settings

SECRET_PATTERNS = [
    re.compile(r"dhp_[A-Za-z0-9]{20,}"),  # DagsHub token
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub token
    # an assignment of a long literal to something named like a secret
    re.compile(r"(?i)(password|token|secret)\w*[ \t]*[:=][ \t]*['\"]?(?!change-me)[A-Za-z0-9][A-Za-z0-9_\-+]{15,}"),
]


def test_no_secret_in_tracked_files():
    """tests/ is skipped: it holds throw-away credentials for the servers the test session starts."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert files, "not a git checkout"
    found = []
    for name in files:
        if name.startswith("tests/") or name == "requirements.txt":
            continue
        text = (ROOT / name).read_text(errors="ignore") if (ROOT / name).is_file() else ""
        for pattern in SECRET_PATTERNS:
            for match in pattern.finditer(text):
                found.append(f"{name}: {match.group(0)[:40]}")
    assert not found, found
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_env_example_holds_only_placeholders():
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"^\w*(PASSWORD|TOKEN|SECRET|KEY)\w*=", line):
            value = line.split("=", 1)[1]
            assert value in ("", "change-me") or value.startswith("generate-"), line


class CountingBody(io.BytesIO):
    def __init__(self, size: int) -> None:
        super().__init__(b"x" * size)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001
        n = super().readinto(buffer)
        self.read_bytes += n
        return n


def test_body_limit_is_enforced_before_reading_the_body(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = CountingBody(limit * 2)
    response = client.post("/predict", input_stream=body, content_type="application/json",
                           headers={"Content-Length": str(limit * 2)})  # fmt: skip
    assert response.status_code == 413 and response.json["error"] == "payload_too_large"
    assert body.read_bytes == 0, f"{body.read_bytes} bytes were read before refusing the body"


STRONG = {
    "admin_token": "a" * 32,
    "airflow_admin_password": "b" * 32,
    "api_key": "c" * 32,
    "airflow_jwt_secret": "d" * 32,
    "postgres_password": "e" * 32,
    "mongo_root_password": "f" * 32,
}


@pytest.mark.parametrize("field", sorted(STRONG))
@pytest.mark.parametrize("weak", ["change-me", ""])
def test_production_refuses_weak_or_missing_secrets(field, weak):
    with pytest.raises(ValueError, match=f"placeholder secrets: set .*{field.upper()}"):
        Settings(_env_file=None, environment="production", **{**STRONG, field: weak})
    Settings(_env_file=None, environment="production", **STRONG)


def test_secret_files_are_private_from_their_first_byte(tmp_path, monkeypatch):
    """Created 0600, not created with the umask's mode and chmod'ed after (a window where others can read)."""
    from ops import envfile, services

    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)  # what a chmod afterwards would have fixed
    old = os.umask(0o022)
    try:
        (tmp_path / "example").write_text("ADMIN_TOKEN=change-me\n")
        envfile.main(str(tmp_path / "example"), str(tmp_path / ".env"))
        services.airflow_env(tmp_path / "airflow", 8080, "admin", "pw-0123456789")
    finally:
        os.umask(old)
    for path in (tmp_path / ".env", tmp_path / "airflow" / "simple_auth_manager_passwords.json"):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_the_env_file_make_up_writes_from_the_example_is_read(tmp_path):
    """`make up` writes .env from .env.example: every process must be able to build its Settings from it
    (an empty `DATA_SOURCE_HOSTS=` once made that fail)."""
    from config.settings import ROOT
    from ops import envfile

    envfile.main(str(ROOT / ".env.example"), str(tmp_path / ".env"))
    settings = Settings(_env_file=tmp_path / ".env")
    assert settings.sources.hosts == () and settings.model_name


def test_only_the_caller_of_a_prediction_or_an_operator_may_label_it(client, app, db):
    """Feedback feeds training: a stranger with the prediction's id (and even the API key) cannot label it."""
    from tests.app.conftest import ADMIN_TOKEN
    from tests.app.test_api import DIGITS, flush

    first = client.post("/predict", json={"instances": [DIGITS.X[1].tolist()]}).json
    other = client.post("/predict", json={"instances": [DIGITS.X[2].tolist()]}).json
    pid = first["predictions"][0]["id"]
    url = f"/predictions/{pid}/feedback"

    anonymous = client.post(url, json={"label": 7})
    assert anonymous.status_code == 403 and "feedback_token" in anonymous.json["message"]
    borrowed = client.post(url, json={"label": 7, "token": other["feedback_token"]})
    assert borrowed.status_code == 403, "a token is good for its own predictions only"
    assert client.post(url, json={"label": 7, "token": first["feedback_token"][:-1] + "x"}).status_code == 403
    flush(app)
    assert db.feedback.find_one({"_id": pid}) is None, "a refused label is not stored"

    assert client.post(url, json={"label": 1, "token": first["feedback_token"]}).status_code == 200
    operator = client.post(url, json={"label": 1}, headers={"X-Admin-Token": ADMIN_TOKEN})
    assert operator.status_code == 200, "an operator labels without the token"
    flush(app)
    assert db.feedback.find_one({"_id": pid})["label"] == 1
