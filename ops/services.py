"""How each local service is started and health-checked; used by `make up` and by the test session."""

from __future__ import annotations

import base64
import configparser
import json
import os
import secrets
import shutil
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
    # MLflow's client telemetry sets and deletes a variable in os.environ from a thread of its own (a
    # task once failed with KeyError '_MLFLOW_TELEMETRY_SESSION_ID'), and nothing of ours reports home
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
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


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (children, their children ...) with its start time, read from /proc.

    Airflow runs each task in a process group of its own, so signalling a Celery worker's group does
    not reach its tasks: whoever stops a whole "host" must stop these too.
    """
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        starts[child] = fields[19]
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = starts[child]
        todo.extend(children.get(child, []))
    return found


def kill_tree(pid: int, tree: dict[int, str] | None = None) -> None:
    """SIGKILL `pid`'s process group and every process of `tree` (default: its descendants now) that is
    still the process it was (same start time), as a host that loses power would."""
    tree = descendants(pid) if tree is None else tree
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child, start in tree.items():
        identity = process_identity(child)
        if identity is not None and identity["start"] == start:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect our own exited child, or the group check would see its zombie forever."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- PID files: `down` signals only a process `up` started ---------------------------------------


def process_identity(pid: int) -> dict[str, str] | None:
    """What tells a process from a later one with the same pid: the boot and its start time (clock
    ticks since boot), from /proc; its command line too (gunicorn rewrites its own, so it is not compared)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return {"boot": boot, "start": stat.rsplit(")", 1)[1].split()[19], "cmdline": cmdline}


def write_pid_file(path: Path, pid: int) -> None:
    """The pid and what identifies its process; readable by us alone (a command line may name secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"pid": pid, **(process_identity(pid) or {})}))
    path.chmod(0o600)


def read_pid_file(path: Path) -> int | None:
    """The pid a PID file names, if that very process still runs: same start time and command line.

    A stale file's pid may belong to another process by now; `down` must never signal that one.
    """
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
        pid = int(recorded["pid"]) if isinstance(recorded, dict) else int(recorded)
        os.kill(pid, 0)
    except (ValueError, KeyError, TypeError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    identity = process_identity(pid) or {}
    if isinstance(recorded, dict):  # (boot, start time) names one process; a reused pid has another start
        same = (identity.get("boot"), identity.get("start")) == (recorded.get("boot"), recorded.get("start"))
    else:  # a file from before identities were recorded: ours only if it runs from our venv
        same = str(BIN) in identity.get("cmdline", "")
    if not same:
        path.unlink(missing_ok=True)
        return None
    return pid


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
        "--cache-size",  # WiredTiger's cache: 1M prediction records went in at 18,700/s with 1G, 14,700/s with 256M
        "1G",
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
    backend_store_uri: str | None = None,
) -> Service:
    """An MLflow server; `bin_dir` names another venv's (the MLflow 2.7.1 test server's, say).

    Artifacts are served by the server itself (clients upload and download through it, so no two
    hosts share an artifact directory); the backend store is SQLite in `home` unless named.
    """
    home.mkdir(parents=True, exist_ok=True)
    # the store's URI goes through the environment, not the command line: a PostgreSQL URI carries its
    # password, and any local user can read a command line (ps, /proc/<pid>/cmdline)
    store = {"MLFLOW_BACKEND_STORE_URI": backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"}
    command = [
        str(bin_dir / "mlflow"), "server",
        "--workers", "1",
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
            **store,
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


# -- the scale-out cluster's services (ops/cluster.py): Debian's PostgreSQL, Redis and nginx, Airflow apart


PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # initdb and postgres refuse to run as root: as root, they run as this user


def as_pg_user(command: list[str]) -> list[str]:
    """`command` as the postgres user when we are root (setpriv execs it: no extra process in between)."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid", PG_USER, "--regid", PG_USER, "--init-groups", "--", *command]


def postgres(port: int, data: Path, log: Path, user: str, password: str) -> Service:
    """A PostgreSQL cluster of our own in `data` on loopback TCP only (no socket in /var/run)."""

    def healthy() -> bool:
        import psycopg2

        if not port_open(port):
            return False
        try:
            psycopg2.connect(
                host="127.0.0.1", port=port, user=user, password=password, dbname="postgres", connect_timeout=2
            ).close()
            return True
        except psycopg2.Error:
            return False

    command = as_pg_user([
        str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
        "-c", "max_connections=200", "-c", "shared_buffers=128MB",
    ])  # fmt: skip
    return Service(
        name="postgres",
        command=command,
        url=f"postgresql://{user}@127.0.0.1:{port}",
        log=log,
        healthy=healthy,
        start_timeout=60,
    )


def postgres_init(data: Path, user: str, password: str) -> None:
    """initdb once into `data`: superuser `user` with `password`, SCRAM on TCP (nothing else listens)."""
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    pwfile = data.parent / f".{data.name}.pw"
    write_private(pwfile, password + "\n")
    try:
        if os.geteuid() == 0:
            shutil.chown(data, PG_USER, PG_USER)
            shutil.chown(pwfile, PG_USER, PG_USER)
        result = subprocess.run(
            as_pg_user([
                str(PG_BIN / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        hint = f" (as root it runs as {PG_USER}: every directory above {data} must be searchable by that user)"
        raise ServiceError(
            f"initdb failed in {data}{hint if os.geteuid() == 0 else ''}:\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"
        )


def redis(port: int, data: Path, log: Path) -> Service:
    """Debian's redis-server on loopback, nothing persisted: the Celery broker's queue."""
    data.mkdir(parents=True, exist_ok=True)

    def healthy() -> bool:
        if not port_open(port):
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:  # refused or timed out between the port check and the PING: not up yet
            return False

    return Service(
        name="redis",
        command=[
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "",
        ],
        url=f"redis://127.0.0.1:{port}/0",
        log=log,
        healthy=healthy,
        start_timeout=20,
    )  # fmt: skip


def nginx(port: int, prefix: Path, conf: Path, log: Path) -> Service:
    """Debian's nginx in the foreground with its own prefix (pid, temp files, logs) and our config."""
    prefix.mkdir(parents=True, exist_ok=True)
    return Service(
        name="nginx",
        command=["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        url=f"http://127.0.0.1:{port}",
        log=log,
        healthy=lambda: http_ok(f"http://127.0.0.1:{port}/proxy-health"),
        start_timeout=20,
    )


def airflow_component(name: str, args: list[str], log: Path, env: dict[str, str], cwd: Path, url: str = "",
                      healthy: Callable[[], bool] | None = None) -> Service:  # fmt: skip
    """One Airflow process (`airflow api-server`, `scheduler`, `celery worker` ...), as its own service."""
    cwd.mkdir(parents=True, exist_ok=True)
    return Service(
        name=name,
        command=[str(BIN / "airflow"), *args],
        url=url,
        log=log,
        healthy=healthy or (lambda: True),
        env=env,
        cwd=cwd,
        start_timeout=240,
    )
