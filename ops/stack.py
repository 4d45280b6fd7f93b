"""The local stack: `python -m ops.stack up|down|status|logs|ensure-champion`.

Every process we start gets a PID file under var/run; `up` is safe to repeat (a healthy service is left
alone, a dead one is restarted on its data), and `down` stops exactly what the PID files name.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

import requests

from config.settings import Settings
from ops import services
from ops.airflow_api import AirflowApi, AirflowApiError
from ops.services import ROOT, Service, ServiceError

VAR = ROOT / "var"
RUN = VAR / "run"
LOGS = VAR / "log"
ORDER = ("mongodb", "mlflow", "airflow", "app")
log = logging.getLogger("stack")


def port_of(url: str, default: int) -> int:
    return urlparse(url).port or default


def local_mlflow(settings: Settings) -> bool:
    """True when MLFLOW_TRACKING_URI names this machine's loopback address: then `make up` runs MLflow."""
    url = urlparse(settings.mlflow_tracking_uri)
    return url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost")


def build(settings: Settings) -> dict[str, Service]:
    """The services to run here, their ports taken from the URLs in settings (.env).

    MLflow is among them only when the tracking URI is local; a remote one (DagsHub, a team server,
    or another loopback address such as 127.0.0.2) is used as it is.
    """
    mongo_port = port_of(settings.mongo_uri, 27017)
    mlflow_port = port_of(settings.mlflow_tracking_uri, 5001)
    airflow_port = port_of(settings.airflow_url, 8080)
    app_port = port_of(settings.app_url, 5000)
    airflow_env = services.airflow_env(
        VAR / "airflow",
        airflow_port,
        settings.airflow_admin_user,
        settings.airflow_admin_password.get_secret_value(),
    )
    built = {
        "mongodb": services.mongo(mongo_port, str(VAR / "mongo"), LOGS / "mongodb.log"),
        "mlflow": services.mlflow(mlflow_port, VAR / "mlflow", LOGS / "mlflow.log"),
        "airflow": services.airflow(VAR / "airflow", airflow_port, LOGS / "airflow.log", airflow_env),
        "app": services.app(app_port, LOGS / "app.log"),
    }
    if not local_mlflow(settings):
        del built["mlflow"]
    return built


def check_remote_registry(settings: Settings) -> None:
    """Before starting anything: a remote MLflow must answer, accept our credentials, and have a registry."""
    from config.settings import registry_config
    from model.errors import RegistryError
    from model.registry import connect

    config = registry_config(settings)
    try:
        capabilities = connect(config).capabilities
    except RegistryError as exc:
        raise ServiceError(str(exc)) from exc
    where = config.tracking_uri + (f" (registry: {config.registry})" if config.registry_uri else "")
    version = f"MLflow {capabilities.server_version}" if capabilities.server_version else "MLflow"
    how = "logged models" if capabilities.logged_models else "models as run artifacts (no logged-models API)"
    print(f"  mlflow   remote: {where}, {version}, {how}")


def pid_of(name: str) -> int | None:
    """The pid var/run/<name>.pid names, if that very process still runs (`services.read_pid_file`)."""
    return services.read_pid_file(RUN / f"{name}.pid")


def write_pid(name: str, pid: int) -> None:
    services.write_pid_file(RUN / f"{name}.pid", pid)


def up(settings: Settings) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    if not local_mlflow(settings):
        check_remote_registry(settings)
    for name, service in build(settings).items():
        pid = pid_of(name)
        if pid is not None and service.healthy():
            print(f"  {name:<8} already running (pid {pid})  {service.url}")
            continue
        if pid is not None:
            print(f"  {name:<8} pid {pid} is not healthy yet, waiting ...")
            services.wait_healthy(service)
            print(f"  {name:<8} healthy (pid {pid})  {service.url}")
            continue
        port = port_of(service.url, 0)
        if port and services.port_open(port):
            raise ServiceError(
                f"{name}: port {port} is in use by a process we did not start; stop it or change the port in .env"
            )
        if name == "airflow":
            _airflow_migrate(service)
        started = time.monotonic()
        proc = services.start(service)
        write_pid(name, proc.pid)
        try:
            services.wait_healthy(service, proc)
        except ServiceError:
            services.stop_group(proc.pid)
            (RUN / f"{name}.pid").unlink(missing_ok=True)
            raise
        print(
            f"  {name:<8} started in {time.monotonic() - started:4.1f}s (pid {proc.pid})  {service.url}"
            f"   log: {service.log}"
        )


def _airflow_migrate(service: Service) -> None:
    result = subprocess.run(
        [str(services.BIN / "airflow"), "db", "migrate"],
        env=services.base_env(service.env),
        cwd=service.cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def down() -> None:
    for name in reversed(ORDER):
        pid = pid_of(name)
        if pid is None:
            print(f"  {name:<8} not running")
            continue
        services.stop_group(pid)
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        print(f"  {name:<8} stopped (pid {pid})")


def status(settings: Settings) -> int:
    bad = 0
    for name, service in build(settings).items():
        pid = pid_of(name)
        healthy = pid is not None and service.healthy()
        state = "healthy" if healthy else ("unhealthy" if pid else "stopped")
        bad += not healthy
        print(f"  {name:<8} {state:<9} {('pid ' + str(pid)) if pid else '':<10} {service.url}")
    return 1 if bad else 0


def ensure_champion(settings: Settings, timeout: float = 600) -> None:
    """If the registry has no champion, get one through Airflow's REST API and wait for it: follow the
    daily chain Airflow starts on its first start, else run ml_pipeline."""
    from config.settings import registry_config
    from model.registry import CHAMPION, connect

    registry = connect(registry_config(settings))
    champion = registry.by_alias(CHAMPION)
    if champion is not None:
        print(f"  champion: {settings.model_name} version {champion.version}")
        return
    try:
        api = AirflowApi(settings)
        api.wait_for_dag("ml_pipeline", timeout=120)
        daily = _first_daily_run(api)
        if daily is not None:
            # Airflow starts the daily chain on its first start: running ml_pipeline beside it trained
            # the same model twice on the same cores, and two versions raced to be champion
            print("  no champion yet: following Airflow's first daily run (ingest_data, train_model, validate_model)")
            _follow_chain(api, daily, timeout)
        else:
            print("  no champion yet: running ml_pipeline (ingest -> train -> validate) through Airflow")
            run_id = api.trigger("ml_pipeline")
            state = api.wait_for_run("ml_pipeline", run_id, timeout=timeout, progress=_progress("ml_pipeline"))
            if state != "success":
                raise ServiceError(
                    f"ml_pipeline run {run_id} ended {state}; see the Airflow UI at {settings.airflow_url}"
                )
    except AirflowApiError as exc:
        raise ServiceError(str(exc)) from exc
    champion = registry.by_alias(CHAMPION)
    if champion is None:
        raise ServiceError("the pipeline succeeded but no champion was promoted; see model_events in MongoDB")
    print(f"  champion: {settings.model_name} version {champion.version}")
    _wait_for_app_model(settings, champion.version)


CHAIN = ("ingest_data", "train_model", "validate_model")  # each run triggers the next through an Asset


def _progress(dag_id: str) -> Callable[[str, str], None]:
    return lambda task, state: print(f"    {dag_id}.{task}: {state}", flush=True)


def _first_daily_run(api: AirflowApi, wait: float = 30) -> str | None:
    """The run of ingest_data that Airflow started (or is about to) because this is its first start, if any.

    A DAG that has never run and is not paused gets the latest daily interval scheduled at once
    (catchup=False); one that has run before, or is paused, gets nothing until tomorrow: then None.
    """
    api.wait_for_dag(CHAIN[0], timeout=60)
    deadline = time.monotonic() + wait
    while True:
        run = api.latest_run(CHAIN[0])
        if run is not None:
            return str(run["dag_run_id"]) if run.get("state") in ("queued", "running") else None
        if api.is_paused(CHAIN[0]) or time.monotonic() > deadline:
            return None
        time.sleep(2)


def _follow_chain(api: AirflowApi, run_id: str, timeout: float) -> None:
    """Wait for ingest_data's run, then for the train_model and validate_model runs its Assets start."""
    deadline = time.monotonic() + timeout
    started = ""
    for dag_id in CHAIN:
        if dag_id != CHAIN[0]:
            run_id = _next_run(api, dag_id, after=started, deadline=deadline)
        state = api.wait_for_run(dag_id, run_id, timeout=deadline - time.monotonic(), progress=_progress(dag_id))
        if state != "success":
            raise ServiceError(f"{dag_id} run {run_id} ended {state}; see the Airflow UI")
        started = str(api.run(dag_id, run_id).get("start_date") or "")


def _next_run(api: AirflowApi, dag_id: str, after: str, deadline: float) -> str:
    """The first run of `dag_id` due after `after` (the ISO start of the run before it in the chain): the
    one that run's Asset event started."""
    while time.monotonic() < deadline:
        run = api.latest_run(dag_id)
        if run is not None and str(run.get("run_after") or "") >= after:
            return str(run["dag_run_id"])
        time.sleep(2)
    raise ServiceError(f"{dag_id} was not started by its Asset after {after}; see the Airflow UI")


def _wait_for_app_model(settings: Settings, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = requests.get(f"{settings.app_url}/health", timeout=3).json()
            if str(body.get("model", {}).get("version")) == version:
                print(f"  app serves version {version}")
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    raise ServiceError(f"the app did not load version {version} within {timeout:.0f}s; see {LOGS / 'app.log'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.stack")
    parser.add_argument("command", choices=["up", "down", "status", "ensure-champion"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.command == "down":
            down()
            return 0
        settings = Settings()
        if args.command == "status":
            return status(settings)
        if args.command == "up":
            up(settings)
        ensure_champion(settings)
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the CLI's last line of defence: one clear line, non-zero exit
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
