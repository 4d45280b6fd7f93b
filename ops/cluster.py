"""The scale-out configuration on native processes: `python -m ops.cluster up|down|status`.

What docker-compose.yml runs, started here without Docker, standing in for several hosts on one:
PostgreSQL (Airflow's metadata and Celery's results, MLflow's backend store), Redis (the Celery
broker), the MongoDB-wire server, MLflow behind basic auth serving its artifacts, Airflow 3 on the
CeleryExecutor (api-server, scheduler, dag-processor, triggerer, and CLUSTER_WORKERS Celery workers),
and CLUSTER_APPS app instances behind nginx. Every "host" (a worker, an app instance) gets its own
directory under `<CLUSTER_DIR>/hosts/` for its working directory, data, caches, journals and outbox:
nothing under var/ is shared, so what crosses hosts goes through MongoDB, MLflow or PostgreSQL.

Ports and the directory come from CLUSTER_* variables (ClusterSettings), chosen so the cluster runs
beside `make up` and the test session. PID files live in `<CLUSTER_DIR>/run`, as ops/stack.py's do.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops import services
from ops.services import ROOT, Service, ServiceError

log = logging.getLogger("cluster")
DB_USER = "airflow"  # compose's PostgreSQL user, owner of the airflow and mlflow databases
DATABASES = ("airflow", "mlflow", "mlflow_auth")


class ClusterSettings(BaseSettings):
    """Where the cluster keeps its state and which ports it listens on (CLUSTER_* variables)."""

    model_config = SettingsConfigDict(env_prefix="CLUSTER_", extra="ignore")

    dir: Path = ROOT / "var" / "cluster"
    workers: int = 2
    apps: int = 2
    worker_concurrency: int = 2
    app_threads: int = 8
    params: Path = ROOT / "config" / "params.yaml"
    postgres_port: int = 15432
    redis_port: int = 16379
    mongo_port: int = 27117
    mlflow_port: int = 15001
    airflow_port: int = 18080
    scheduler_health_port: int = 18974
    log_server_port: int = 18793  # worker i serves its task logs on this + i; the triggerer on this + 50
    app_port: int = 15101  # app instance i on this + i
    proxy_port: int = 18000
    # a task whose worker stopped heartbeating is failed (and retried elsewhere) after this long
    # (30 s failed a healthy task once on this loaded 2-core machine: its heartbeat came late)
    heartbeat_timeout: int = 60
    task_retry_delay_seconds: float = 5.0
    # True: new DAGs wait to be unpaused (the test unpauses each when it needs it, so the daily DAGs'
    # first runs do not land on top of the start-up); False, as `make up`, for a cluster you use
    dags_paused: bool = False


@dataclass(frozen=True)
class Host:
    """A worker or app instance: its own name (as Airflow records it) and its own directory."""

    name: str
    root: Path

    def dirs(self) -> dict[str, str]:
        """Settings that point at local disk: all of them inside this host's directory."""
        return {
            "DATA_DIR": str(self.root / "data"),
            "MODEL_CACHE_DIR": str(self.root / "model-cache"),
            "OUTBOX_DIR": str(self.root / "outbox"),
        }


class Cluster:
    def __init__(self, settings: ClusterSettings | None = None) -> None:
        self.settings = s = settings or ClusterSettings()
        self.root = s.dir.resolve()
        self.run_dir = self.root / "run"
        self.logs = self.root / "log"
        self.workers = [Host(f"worker-{chr(ord('a') + i)}", self.root / "hosts" / f"worker-{chr(ord('a') + i)}")
                        for i in range(s.workers)]  # fmt: skip
        self._control: dict[str, str] | None = None
        self.apps = [Host(f"app-{i + 1}", self.root / "hosts" / f"app-{i + 1}") for i in range(s.apps)]

    # -- what every process is told -----------------------------------------------------------

    @property
    def secrets(self) -> dict[str, str]:
        """Generated once per cluster directory and kept there (0600): nothing here has a default."""
        path = self.root / "secrets.json"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            names = ("postgres", "airflow_admin", "api_key", "admin_token", "mlflow", "mlflow_flask", "mongo_root")
            services.write_private(path, json.dumps({n: secrets.token_urlsafe(24) for n in names}))
        return dict(json.loads(path.read_text()))

    def db_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{DB_USER}:{self.secrets['postgres']}@127.0.0.1:{self.settings.postgres_port}/{database}"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.airflow_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.proxy_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.mlflow_port}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.settings.mongo_port}"

    def platform_env(self) -> dict[str, str]:
        """What config.settings reads in every app instance and Airflow process: compose's x-platform-env."""
        sec = self.secrets
        return {
            "ENVIRONMENT": "production",
            # no developer .env leaks in: everything the cluster's processes need is set here
            "MLOPS_ENV_FILE": str(self.root / "no.env"),
            "MONGO_URI": self.mongo_url,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": sec["mlflow"],
            "AIRFLOW_URL": self.airflow_url,
            "AIRFLOW_ADMIN_USER": "admin",
            "AIRFLOW_ADMIN_PASSWORD": sec["airflow_admin"],
            "APP_URL": self.proxy_url,
            "API_KEY": sec["api_key"],
            "ADMIN_TOKEN": sec["admin_token"],
            "POSTGRES_PASSWORD": sec["postgres"],
            "AIRFLOW_JWT_SECRET": self.control_env()["AIRFLOW__API_AUTH__JWT_SECRET"],
            # the MongoDB-wire server runs without auth on loopback; production's check wants the setting
            "MONGO_ROOT_PASSWORD": sec["mongo_root"],
            "PARAMS_PATH": str(self.settings.params.resolve()),
            "TASK_RETRY_DELAY_SECONDS": str(self.settings.task_retry_delay_seconds),
            # MLflow's client telemetry sets and deletes a variable in os.environ from a thread of its own;
            # a train task failed once with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' (and no host here may
            # send telemetry anyway)
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }

    def control_env(self) -> dict[str, str]:
        """The control plane's Airflow environment (its home holds the keys every component shares)."""
        if self._control is None:
            self._control = services.airflow_env(
                self.root / "airflow", self.settings.airflow_port, "admin", self.secrets["airflow_admin"]
            )
        return self._control

    def airflow_env(self, home: Path) -> dict[str, str]:
        """compose's x-airflow-env with this machine's ports; `home` is the process's own AIRFLOW_HOME."""
        s = self.settings
        control = self.control_env()
        env = control if home == self.root / "airflow" else services.airflow_env(
            home, s.airflow_port, "admin", self.secrets["airflow_admin"])  # fmt: skip
        shared = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")
        return {
            **env,
            **{key: control[key] for key in shared},  # one set of keys for every component, as compose's .env
            **self.platform_env(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url("airflow"),
            "AIRFLOW__CELERY__RESULT_BACKEND": self.db_url("airflow", "db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{s.redis_port}/0",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(s.worker_concurrency),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "config.hostnames.hostname",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(s.dags_paused),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(s.scheduler_health_port),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(s.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(s.log_server_port + 50),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s.log_server_port),
        }

    # -- the services ---------------------------------------------------------------------------

    def build(self) -> dict[str, Service]:
        """Every service, in start order."""
        s, sec, logs = self.settings, self.secrets, self.logs
        built: dict[str, Service] = {
            "postgres": services.postgres(s.postgres_port, self.root / "postgres", logs / "postgres.log",
                                          DB_USER, sec["postgres"]),
            "redis": services.redis(s.redis_port, self.root / "redis", logs / "redis.log"),
            "mongodb": services.mongo(s.mongo_port, str(self.root / "mongo"), logs / "mongodb.log"),
            "mlflow": self._mlflow(),
        }  # fmt: skip
        control = self.root / "airflow"
        env = self.airflow_env(control)
        built["airflow-api"] = services.airflow_component(
            "airflow-api", ["api-server", "--port", str(s.airflow_port)], logs / "airflow-api.log", env, control,
            url=self.airflow_url,
            # it also answers every task's execution-API calls: on a busy machine it can take seconds
            healthy=lambda: services.http_ok(f"{self.airflow_url}/api/v2/monitor/health", timeout=10),
        )  # fmt: skip
        built["airflow-scheduler"] = services.airflow_component(
            "airflow-scheduler", ["scheduler"], logs / "airflow-scheduler.log", env, control,
            healthy=lambda: services.http_ok(f"http://127.0.0.1:{s.scheduler_health_port}/health"),
        )  # fmt: skip
        built["airflow-dag-processor"] = services.airflow_component(
            "airflow-dag-processor", ["dag-processor"], logs / "airflow-dag-processor.log", env, control,
            healthy=lambda: self._component_healthy("dag_processor"),
        )  # fmt: skip
        built["airflow-triggerer"] = services.airflow_component(
            "airflow-triggerer", ["triggerer"], logs / "airflow-triggerer.log", env, control,
            healthy=lambda: self._component_healthy("triggerer"),
        )  # fmt: skip
        for i, host in enumerate(self.workers):
            built[host.name] = self._worker(host, i)
        for i, host in enumerate(self.apps):
            built[host.name] = self._app(host, s.app_port + i)
        built["nginx"] = services.nginx(s.proxy_port, self.root / "nginx", self._nginx_conf(), logs / "nginx.log")
        return built

    def _mlflow(self) -> Service:
        home = self.root / "mlflow"
        home.mkdir(parents=True, exist_ok=True)
        ini = home / "auth.ini"
        services.write_private(
            ini,
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {self.db_url('mlflow_auth')}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n"
            "auth_cache_ttl_seconds = 60\n",
        )
        sec = self.secrets
        return services.mlflow(
            self.settings.mlflow_port,
            home,
            self.logs / "mlflow.log",
            app_name="basic-auth",
            backend_store_uri=self.db_url("mlflow"),
            env={
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
                "MLFLOW_AUTH_ADMIN_PASSWORD": sec["mlflow"],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": sec["mlflow_flask"],
            },
        )

    def _worker(self, host: Host, index: int) -> Service:
        """A Celery worker standing in for a host: its own AIRFLOW_HOME, logs, data and host name."""
        home = host.root / "airflow"
        env = {
            **self.airflow_env(home),
            **host.dirs(),
            "MLOPS_HOSTNAME": host.name,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.settings.log_server_port + index),
        }
        log = self.logs / f"{host.name}.log"
        # a worker about to start must say "ready" anew; a running one (status, a repeated up) has said it
        running = services.read_pid_file(self.pid_file(host.name)) is not None
        offset = log.stat().st_size if log.exists() and not running else 0
        ready = re.compile(rb"\b" + re.escape(host.name.encode()) + rb"@\S+ ready\.")

        def healthy() -> bool:  # celery says "<name>@<host> ready." once it consumes from the broker
            if not log.exists():
                return False
            with log.open("rb") as fh:
                fh.seek(offset)
                return ready.search(fh.read()) is not None

        return services.airflow_component(
            host.name,
            ["celery", "worker", "--celery-hostname", f"{host.name}@%h", "--pid", str(home / "worker.pid")],
            log, env, host.root, healthy=healthy,
        )  # fmt: skip

    def _app(self, host: Host, port: int) -> Service:
        env = {
            **self.platform_env(),
            **host.dirs(),
            "PROMETHEUS_MULTIPROC_DIR": str(host.root / "metrics"),
            "APP_THREADS": str(self.settings.app_threads),
        }
        service = services.app(port, self.logs / f"{host.name}.log", env=env, workers=1)
        service.name = host.name
        service.cwd = host.root
        host.root.mkdir(parents=True, exist_ok=True)
        return service

    def _nginx_conf(self) -> Path:
        prefix = self.root / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        upstreams = "\n".join(
            f"        server 127.0.0.1:{self.settings.app_port + i} max_fails=0;" for i in range(len(self.apps))
        )
        text = (ROOT / "config" / "nginx" / "cluster.conf").read_text()
        for field, value in (("@PREFIX@", str(prefix)), ("@UPSTREAMS@", upstreams),
                             ("@PORT@", str(self.settings.proxy_port))):  # fmt: skip
            text = text.replace(field, value)
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        return conf

    def _component_healthy(self, component: str) -> bool:
        try:
            body = requests.get(f"{self.airflow_url}/api/v2/monitor/health", timeout=10).json()
        except (requests.RequestException, ValueError):
            return False
        return bool(body.get(component, {}).get("status") == "healthy")

    # -- up / down / status ---------------------------------------------------------------------

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def up(self) -> dict[str, float]:
        """Start what is not running, in stages that can start together; returns seconds per stage."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for host in (*self.workers, *self.apps):
            host.root.mkdir(parents=True, exist_ok=True)
        services.postgres_init(self.root / "postgres", DB_USER, self.secrets["postgres"])
        built = self.build()
        stages = [
            ["postgres", "redis", "mongodb"],
            ["mlflow", "airflow-api", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"],
            [h.name for h in (*self.workers, *self.apps)],
            ["nginx"],
        ]
        timings: dict[str, float] = {}
        started_at = time.monotonic()
        for stage in stages:
            t0 = time.monotonic()
            if stage[0] == "mlflow":
                self._create_databases()
                self._airflow_migrate(built["airflow-api"])
            with ThreadPoolExecutor(len(stage)) as pool:
                for _ in pool.map(lambda name: self._start(name, built[name]), stage):
                    pass
            timings[" + ".join(stage)] = round(time.monotonic() - t0, 1)
        timings["total"] = round(time.monotonic() - started_at, 1)
        return timings

    def _start(self, name: str, service: Service) -> None:
        path = self.pid_file(name)
        pid = services.read_pid_file(path)
        if pid is not None:
            services.wait_healthy(service)
            print(f"  {name:<22} running (pid {pid})", flush=True)
            return
        port = services.port_open
        if service.url.startswith("http") and port(int(service.url.rsplit(":", 1)[1].split("/")[0])):
            raise ServiceError(f"{name}: {service.url} is in use by a process we did not start; set CLUSTER_* ports")
        t0 = time.monotonic()
        proc = services.start(service)
        services.write_pid_file(path, proc.pid)
        try:
            services.wait_healthy(service, proc)
        except ServiceError:
            services.stop_group(proc.pid)
            path.unlink(missing_ok=True)
            raise
        print(f"  {name:<22} started in {time.monotonic() - t0:5.1f}s (pid {proc.pid})  log: {service.log}", flush=True)

    def _create_databases(self) -> None:
        import psycopg2

        s = self.settings
        conn = psycopg2.connect(host="127.0.0.1", port=s.postgres_port, user=DB_USER,
                                password=self.secrets["postgres"], dbname="postgres")  # fmt: skip
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database")
                present = {row[0] for row in cur.fetchall()}
                for name in DATABASES:
                    if name not in present:
                        cur.execute(f'CREATE DATABASE "{name}" OWNER {DB_USER}')
        finally:
            conn.close()

    def _airflow_migrate(self, api: Service) -> None:
        result = subprocess.run(
            [str(services.BIN / "airflow"), "db", "migrate"],
            env=services.base_env(api.env), cwd=api.cwd, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    def down(self) -> None:
        """Stop every process a PID file names, the app tier first and PostgreSQL last."""
        names = list(self.build_names())
        for name in reversed(names):
            pid = services.read_pid_file(self.pid_file(name))
            if pid is None:
                continue
            tree = services.descendants(pid)  # a worker's tasks run in process groups of their own
            services.stop_group(pid, timeout=30)
            services.kill_tree(pid, tree)
            self.pid_file(name).unlink(missing_ok=True)
            print(f"  {name:<22} stopped (pid {pid})", flush=True)

    def build_names(self) -> list[str]:
        return [
            "postgres", "redis", "mongodb", "mlflow", "airflow-api", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", *(h.name for h in (*self.workers, *self.apps)), "nginx",
        ]  # fmt: skip

    def status(self) -> int:
        bad = 0
        built = self.build()
        for name in self.build_names():
            pid = services.read_pid_file(self.pid_file(name))
            healthy = pid is not None and built[name].healthy()
            bad += not healthy
            state = "healthy" if healthy else ("unhealthy" if pid else "stopped")
            print(f"  {name:<22} {state:<9} {('pid ' + str(pid)) if pid else ''}")
        return 1 if bad else 0

    def destroy(self) -> None:
        """down, then remove the cluster directory (the throw-away test cluster)."""
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.cluster")
    parser.add_argument("command", choices=["up", "down", "status", "destroy"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cluster = Cluster()
    try:
        if args.command == "up":
            timings = cluster.up()
            print(
                f"  up in {timings['total']}s: predictions at {cluster.proxy_url} (X-API-Key in "
                f"{cluster.root / 'secrets.json'}), Airflow at {cluster.airflow_url}, MLflow at {cluster.mlflow_url}"
            )
            return 0
        if args.command == "status":
            return cluster.status()
        if args.command == "down":
            cluster.down()
        else:
            cluster.destroy()
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
