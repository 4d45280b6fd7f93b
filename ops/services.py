"""How each local service is started and health-checked; used by `make up` and by the test session."""

from __future__ import annotations

import base64
import configparser
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    command: list[str]
    url: str
    log: Path
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    start_timeout: float = 90.0


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, statuses: tuple[int, ...] = (200,), timeout: float = 2.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code in statuses
    except requests.RequestException:
        return False


def write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only, from its first byte (never chmod'ed afterwards)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
        with os.fdopen(fd, "w") as fh:
            fd = -1
            fh.write(text)
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every service gets: the venv's bin first on PATH, the repo importable."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def start(service: Service) -> subprocess.Popen[bytes]:
    """Start `service` in its own process group, logging to its log file."""
    service.log.parent.mkdir(parents=True, exist_ok=True)
    with service.log.open("ab") as out:
        return subprocess.Popen(
            service.command,
            cwd=service.cwd,
            env=base_env(service.env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_healthy(service: Service, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll the health check until it passes; fail early if the process exits."""
    deadline = time.monotonic() + service.start_timeout
    while time.monotonic() < deadline:
        if service.healthy():
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with code {proc.returncode} while starting; see {service.log}\n"
                + tail(service.log)
            )
        time.sleep(0.3)
    raise ServiceError(
        f"{service.name} did not become healthy in {service.start_timeout:.0f}s; see {service.log}\n"
        + tail(service.log)
    )


def stop_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect our own exited child, or the group check would see its zombie forever."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


# -- the four services ----------------------------------------------------------------------------


def mongo(port: int, storage: str, log: Path) -> Service:
    def healthy() -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        if not port_open(port):
            return False
        client: MongoClient = MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    command = [
        str(BIN / "secantusd-py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        storage,
        "--standalone",
        "--cache-size",
        "256M",
        "--log-level",
        "WARNING",
    ]
    if storage != ":memory:":
        # without it a kill -9 can lose writes the server already acknowledged (and we deleted our copy)
        command.append("--sync-on-commit")
    return Service(
        name="mongodb",
        command=command,
        url=f"mongodb://127.0.0.1:{port}",
        log=log,
        healthy=healthy,
        start_timeout=30,
    )  # fmt: skip


def mlflow(
    port: int,
    home: Path,
    log: Path,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
    bin_dir: Path = BIN,
    host: str = "127.0.0.1",
) -> Service:
    """An MLflow server; `bin_dir` names another venv's (the MLflow 2.7.1 test server's, say)."""
    home.mkdir(parents=True, exist_ok=True)
    command = [
        str(bin_dir / "mlflow"), "server",
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", str(home / "artifacts"),
        "--host", host,
        "--port", str(port),
    ]  # fmt: skip
    if app_name:
        command += ["--app-name", app_name]
    return Service(
        name="mlflow",
        command=command,
        url=f"http://{host}:{port}",
        log=log,
        healthy=lambda: http_ok(f"http://{host}:{port}/health"),
        # a 2.x server execs `gunicorn` by name: its own venv's bin comes first on PATH
        env={
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **(env or {}),
        },
        start_timeout=90,
    )


def airflow_env(home: Path, port: int, user: str, password: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Airflow's environment: our airflow.cfg merged into AIRFLOW_HOME, the project's DAGs and plugins."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "airflow.cfg"
    merged = configparser.ConfigParser(interpolation=None)
    merged.read(cfg)
    ours = configparser.ConfigParser(interpolation=None)
    ours.read(ROOT / "config" / "airflow.cfg")
    for section in ours.sections():
        if not merged.has_section(section):
            merged.add_section(section)
        for key, value in ours.items(section):
            merged.set(section, key, value)
    with cfg.open("w") as fh:
        merged.write(fh)
    secrets_file = home / "secrets.json"
    if not secrets_file.exists():
        # Every Airflow component must share these, or the task API rejects the scheduler's tokens.
        write_private(
            secrets_file,
            json.dumps(
                {
                    "jwt_secret": secrets.token_urlsafe(32),
                    "secret_key": secrets.token_urlsafe(32),
                    "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                }
            ),
        )
    shared = json.loads(secrets_file.read_text())
    passwords = home / "simple_auth_manager_passwords.json"
    write_private(passwords, json.dumps({user: password}))
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(cfg),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": shared["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": shared["secret_key"],
        "AIRFLOW__CORE__FERNET_KEY": shared["fernet_key"],
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        **(extra or {}),
    }


def airflow(home: Path, port: int, log: Path, env: dict[str, str]) -> Service:
    return Service(
        name="airflow",
        command=[str(BIN / "airflow"), "standalone"],
        url=f"http://127.0.0.1:{port}",
        log=log,
        healthy=lambda: http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health"),
        env=env,
        cwd=home,
        start_timeout=180,
    )


def app(port: int, log: Path, env: dict[str, str] | None = None, workers: int = 2) -> Service:
    return Service(
        name="app",
        command=[
            str(BIN / "gunicorn"),
            "--config", str(ROOT / "app" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "app:create_app()",
        ],
        url=f"http://127.0.0.1:{port}",
        log=log,
        # the process is up once it is live; /readyz says when it can take traffic (a champion loaded)
        healthy=lambda: http_ok(f"http://127.0.0.1:{port}/livez"),
        env=env or {},
        start_timeout=120,  # imports alone took 60 s on a loaded 2-core machine
    )  # fmt: skip
