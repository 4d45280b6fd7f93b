"""`make compose-smoke`: the docker-compose stack end to end where a Docker engine runs, else a skip.

With an engine and Compose v2: `docker compose up --build --wait` (two app replicas, two Celery workers),
ml_pipeline through Airflow's REST API, predictions through the proxy, monitor_platform, then
`down --volumes`. Its own project name, env file (fresh secrets, ENVIRONMENT=production accepts no
placeholder) and free host ports, so a stack already running is not touched. Without an engine it says
why and exits 0. Standard library only: it runs without `make install`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROJECT = "mlops-smoke"
SCALE = {"app": 2, "airflow-worker": 2}
TERMINAL = {"success", "failed"}


class SmokeFailed(RuntimeError):
    pass


def compose_command() -> tuple[list[str] | None, str]:
    """`docker compose`, or None and why the smoke test cannot run here."""
    docker = shutil.which("docker")
    if docker is None:
        return None, "no docker client on PATH"
    server = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    if server.returncode != 0:
        reason = (server.stderr.strip().splitlines() or ["docker version failed"])[-1]
        return None, f"no Docker engine answers ({reason})"
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        return None, "the docker client has no compose plugin (`up --wait` needs Compose v2)"
    return [docker, "compose"], ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_env(path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """.env.example with every placeholder replaced by a fresh secret, then `overrides`.

    An empty value is left out (unset: the setting's default), since Settings reads `KEY=` as None,
    which a plain string setting (DATA_SOURCE_HOSTS) refuses.
    """
    values: dict[str, str] = {}
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            value = secrets.token_urlsafe(24) if value.strip() == "change-me" else value
            value = overrides.pop(key, value)
            if not value.strip():
                continue
            values[key] = value
            line = f"{key}={value}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items()]
    values.update(overrides)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return values


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={**(headers or {})})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(what: str, check: Any, timeout: float, every: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(every)
    raise SmokeFailed(f"{what}: not after {timeout:.0f}s (last: {str(last)[:300]})")


class Airflow:
    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base

        def login() -> tuple[bool, Any]:
            status, body = http("POST", f"{base}/auth/token", {"username": user, "password": password})
            return status in (200, 201), body

        token = wait_for("Airflow login", login, timeout=120)["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def run(self, dag_id: str, timeout: float) -> str:
        """Trigger `dag_id` once it is parsed, wait for the run to end, return its state."""
        wait_for(
            f"DAG {dag_id} parsed",
            lambda: (http("GET", f"{self.base}/api/v2/dags/{dag_id}", headers=self.headers)[0] == 200, None),
            timeout=300,
        )
        status, body = http(
            "POST", f"{self.base}/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}}, self.headers
        )
        if status not in (200, 201):
            raise SmokeFailed(f"triggering {dag_id}: HTTP {status} {str(body)[:300]}")
        run_id = body["dag_run_id"]
        print(f"  {dag_id}: run {run_id} triggered", flush=True)

        def ended() -> tuple[bool, str]:
            _, run = http("GET", f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=self.headers)
            state = str(run.get("state")) if isinstance(run, dict) else str(run)
            return state in TERMINAL, state

        state = wait_for(f"{dag_id} run {run_id}", ended, timeout=timeout, every=10)
        print(f"  {dag_id}: {state}", flush=True)
        return str(state)


def smoke(compose: list[str], keep: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlops-compose-smoke-"))
    env_file = workdir / ".env"
    app_port, airflow_port = free_port(), free_port()
    values = write_env(
        env_file,
        {
            "API_KEY": secrets.token_urlsafe(24),
            "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "APP_HOST_PORT": str(app_port),
            "AIRFLOW_HOST_PORT": str(airflow_port),
        },
    )
    env = {**os.environ, "COMPOSE_ENV_FILE": str(env_file)}
    base = [*compose, "--project-name", PROJECT, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    base += ["--env-file", str(env_file)]
    (ROOT / "data").mkdir(exist_ok=True)  # bind-mounted read-only; Docker would create it root-owned

    def dc(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*base, *args], env=env, cwd=ROOT, check=check)

    dc("down", "--volumes", "--remove-orphans", check=False)  # what an interrupted run left
    started = time.monotonic()
    try:
        scale = [arg for name, n in SCALE.items() for arg in ("--scale", f"{name}={n}")]
        print(f"docker compose up --build --wait ({', '.join(f'{k}={v}' for k, v in SCALE.items())}) ...", flush=True)
        dc("up", "--build", "--detach", "--wait", "--wait-timeout", "900", *scale)
        print(f"  up and healthy after {time.monotonic() - started:.0f}s", flush=True)

        airflow = Airflow(
            f"http://127.0.0.1:{airflow_port}", values["AIRFLOW_ADMIN_USER"], values["AIRFLOW_ADMIN_PASSWORD"]
        )
        if airflow.run("ml_pipeline", timeout=1800) != "success":
            raise SmokeFailed("ml_pipeline did not succeed (ingest -> train -> validate -> promote)")

        app = f"http://127.0.0.1:{app_port}"
        key = {"X-API-Key": values["API_KEY"]}
        # every replica polls the champion alias; ten ready answers in a row through the proxy
        streak = {"n": 0}

        def ready() -> tuple[bool, Any]:
            status, body = http("GET", f"{app}/readyz")
            streak["n"] = streak["n"] + 1 if status == 200 else 0
            return streak["n"] >= 10, body

        wait_for("the app's replicas ready through the proxy", ready, timeout=300, every=1)
        versions = set()
        for i in range(20):
            row = [float((i + j) % 17) for j in range(64)]
            status, body = http("POST", f"{app}/predict", {"instances": [row]}, key)
            if status != 200:
                raise SmokeFailed(f"POST /predict through the proxy: HTTP {status} {str(body)[:300]}")
            versions.add(str(body["model"]["version"]))
        print(f"  20 predictions through the proxy: 200, model version(s) {sorted(versions)}", flush=True)

        if airflow.run("monitor_platform", timeout=900) != "success":
            raise SmokeFailed("monitor_platform did not succeed (its decide task names each breach)")
        print(f"compose smoke test passed in {time.monotonic() - started:.0f}s", flush=True)
    except (SmokeFailed, subprocess.CalledProcessError):
        dc("ps", "--all", check=False)
        dc("logs", "--no-color", "--tail", "60", check=False)
        raise
    finally:
        if keep:
            print(f"left running (--keep): project {PROJECT}, env file {env_file}, app on :{app_port}")
        else:
            dc("down", "--volumes", "--remove-orphans", check=False)
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.compose_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args(argv)
    compose, reason = compose_command()
    if compose is None:
        print(f"compose smoke test skipped: {reason}. It needs a Docker engine with Compose v2; "
              "tests/ops/test_compose.py checks the file statically meanwhile.")  # fmt: skip
        return 0
    try:
        smoke(compose, args.keep)
    except (SmokeFailed, subprocess.CalledProcessError) as exc:
        print(f"compose smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
