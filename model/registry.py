"""All access to the MLflow tracking server and model registry goes through this module.

The same code talks to a local MLflow 3 server and to MLflow 2.7+ servers such as DagsHub's hosted
MLflow, with or without basic auth: the difference is the URIs and credentials in `RegistryConfig`,
and what `probe()` finds the server can do (`Capabilities`). Every choice that depends on the server
is made from those capabilities, here, once; nothing downstream catches errors to find out.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import requests

from model.errors import RegistryError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PROFILE_ARTIFACT = "reference_profile.json"
EXAMPLE_PREDICTIONS_ARTIFACT = "input_example_predictions.json"
MONITORING_EXPERIMENT = "monitoring"


@dataclass(frozen=True)
class RegistryConfig:
    tracking_uri: str
    model_name: str
    experiment_name: str
    username: str | None = None
    password: str | None = None
    http_timeout: float = 10.0
    http_retries: int = 2
    registry_uri: str | None = None  # another server for the model registry; None: the tracking server
    # what to tell a user whose credentials are refused (settings knows which variables they set)
    credentials_hint: str = "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"

    @property
    def registry(self) -> str:
        return self.registry_uri or self.tracking_uri


@dataclass(frozen=True)
class Capabilities:
    """What the probed server can do. A registry with aliases is required; the rest is optional."""

    logged_models: bool  # MLflow 3's logged-models API on both servers; else models are logged as run artifacts
    server_version: str | None = None  # as the tracking server reports it, when it does


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: list[str]
    source: str


_MLFLOW = threading.RLock()  # MLflow's process-wide settings are ours for one call at a time
_T = TypeVar("_T")


def _session(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a Registry method with this registry's MLflow settings, put back afterwards.

    MLflow's client takes credentials, retries and timeouts only from the environment, and its fluent
    API (runs, log_model) the tracking URI from a process-wide setting. Rather than set them once from
    a constructor (and for every other user of MLflow in the process), each call sets them under a
    lock and restores what was there, so two registries in one process (the tests', or tracking and a
    DagsHub registry) cannot see each other's credentials.
    """

    @functools.wraps(method)
    def wrapper(self: Registry, *args: Any, **kwargs: Any) -> _T:
        from mlflow.tracking._tracking_service import utils as tracking

        config = self.config
        wanted = {
            "MLFLOW_TRACKING_USERNAME": config.username or None,
            "MLFLOW_TRACKING_PASSWORD": config.password or None,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(config.http_retries),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(config.http_timeout)),
        }
        with _MLFLOW:
            saved = _current(wanted)
            # the fluent API's URI is set in MLflow's module, not through set_tracking_uri, which also
            # writes MLFLOW_TRACKING_URI and deletes it on the way back: another thread that had just set
            # it (or was reading os.environ) lost its value
            uri = tracking._tracking_uri
            try:
                _set_environment(wanted)
                tracking._tracking_uri = config.tracking_uri  # type: ignore[assignment]
                return method(self, *args, **kwargs)
            finally:
                tracking._tracking_uri = uri
                _restore_environment(saved, wanted)

    return wrapper


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _current(keys: Iterable[str]) -> dict[str, str | None]:
    return {key: os.environ.get(key) for key in keys}


def _restore_environment(saved: dict[str, str | None], ours: dict[str, str | None]) -> None:
    """Put back what `saved` held, except where another thread has set a variable since we did."""
    now = _current(saved)
    _set_environment({key: value for key, value in saved.items() if now[key] == ours[key]})


class Registry:
    """A thin adapter over MlflowClient; construct with `connect()` to probe the server first."""

    def __init__(self, config: RegistryConfig) -> None:
        from mlflow import MlflowClient

        self.config = config  # nothing global is set here: see _session
        self.client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry)
        self._capabilities: Capabilities | None = None

    # -- capability probe ---------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Probed on first use (`connect()` probes at once); the answer is kept for this object's life."""
        if self._capabilities is None:
            self._capabilities = self.probe()
        return self._capabilities

    def probe(self) -> Capabilities:
        """Check the servers answer, accept our credentials, and have a registry with aliases.

        Tested against MLflow 3.x and 2.7.1 (DagsHub's), each with and without basic auth. A missing
        endpoint answers 404 without an MLflow error code (2.x, and hosted services that leave parts
        of the API out); a present one answers 2xx or an MLflow error about the request itself, e.g.
        a missing alias is 404 RESOURCE_DOES_NOT_EXIST on 3.x and 400 INVALID_PARAMETER_VALUE on 2.x.
        """
        tracking = self.config.tracking_uri.rstrip("/")
        registry = self.config.registry.rstrip("/")
        if not tracking.startswith(("http://", "https://")):  # a local store: everything is there
            self._capabilities = Capabilities(logged_models=True)
            return self._capabilities
        response = self._get(tracking, "/api/2.0/mlflow/experiments/search", max_results=1)
        self._check_auth(tracking, response)
        if response.status_code != 200:
            raise RegistryError(f"MLflow at {tracking} answered HTTP {response.status_code}: {response.text[:200]}")
        if registry != tracking:
            self._check_auth(registry, self._get(registry, "/api/2.0/mlflow/experiments/search", max_results=1))
        response = self._get(registry, "/api/2.0/mlflow/registered-models/search", max_results=1)
        if response.status_code != 200:
            raise RegistryError(
                f"MLflow at {registry} has no usable model registry (HTTP {response.status_code}: "
                f"{response.text[:200]}); the platform needs one to register and promote models. "
                "Some hosted servers track runs but have no registry: point MLFLOW_REGISTRY_URI at one that does"
            )
        response = self._get(registry, "/api/2.0/mlflow/registered-models/alias", name="__probe__", alias=CHAMPION)
        if not _endpoint_exists(response):
            raise RegistryError(
                f"MLflow at {registry} does not support model aliases (HTTP {response.status_code}: "
                f"{response.text[:200]}); MLflow >= 2.3 is needed"
            )
        # a logged model is registered by its id, which a registry on another server must know too
        logged = all(
            _endpoint_exists(self._get(base, "/api/2.0/mlflow/logged-models/m-00000000000000000000000000000000"))
            for base in {tracking, registry}
        )
        version = self._get(tracking, "/version")
        self._capabilities = Capabilities(
            logged_models=logged,
            server_version=version.text.strip()[:40] if version.status_code == 200 else None,
        )
        log.info("MLflow at %s: %s", tracking, self._capabilities)
        return self._capabilities

    def _get(self, base: str, path: str, **params: Any) -> requests.Response:
        auth = (self.config.username, self.config.password or "") if self.config.username else None
        try:
            # requests reads the proxies by iterating os.environ, which another thread's `_session` (or
            # MLflow's set_tracking_uri) may be changing: a key deleted mid-iteration is a KeyError
            with _MLFLOW:
                return requests.get(f"{base}{path}", params=params, auth=auth, timeout=self.config.http_timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"MLflow at {base} is unreachable: {exc}") from exc

    def _check_auth(self, base: str, response: requests.Response) -> None:
        if response.status_code in (401, 403):
            who = f"user {self.config.username!r}" if self.config.username else "no credentials"
            raise RegistryError(
                f"MLflow at {base} refused our credentials (HTTP {response.status_code}, {who}): "
                f"check {self.config.credentials_hint} in .env"
            )

    # -- reading ------------------------------------------------------------------------------

    @_session
    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.config.model_name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return self._info(mv)

    @_session
    def version(self, version: str) -> VersionInfo:
        return self._info(self.client.get_model_version(self.config.model_name, str(version)))

    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            tags=dict(mv.tags or {}),
            aliases=list(mv.aliases or []),
            source=mv.source,
        )

    def aliases_of(self, version: str) -> list[str]:
        """Aliases read one by one: search results have been seen to omit them."""
        return [a for a in (CHAMPION, CHALLENGER, PREVIOUS) if (v := self.by_alias(a)) and v.version == version]

    @_session
    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def load_verified(self, version: str, dst: Path, expected_digest: str | None) -> tuple[Any, Path, str]:
        """Download `version` into `dst`, check its files against the digest the platform recorded, and
        only then load (unpickle) the Pipeline; returns it, its directory and the digest. See
        model/provenance.py."""
        from model.provenance import verify

        path = self.download_version(version, dst)
        files = verify(path, expected_digest, f"{self.config.model_name} version {version}")
        return load_pipeline(path), path, files

    @_session
    def download_version(self, version: str, dst: Path) -> Path:
        """Download the model directory of `version` into `dst` and return its path.

        The version's own download URI is a run artifact (2.x servers) or a logged model (3.x); it is
        read from the registry server and fetched from the tracking server, which may be another one.
        """
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        uri = self.client.get_model_version_download_uri(self.config.model_name, str(version))
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=self.config.tracking_uri
        )
        return Path(path)

    @_session
    def run_json(self, run_id: str, artifact: str) -> dict[str, Any]:
        """A JSON artifact of a run, e.g. the reference profile logged at training."""
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact, dst_path=tmp, tracking_uri=self.config.tracking_uri
            )
            return json.loads(Path(path).read_text())  # type: ignore[no-any-return]

    @_session
    def log_monitoring(self, key: str, metrics: dict[str, float], report: dict[str, Any]) -> str:
        """One run per monitoring key (the DAG run's logical date): re-running it updates the same run."""
        import mlflow

        experiment = mlflow.set_experiment(MONITORING_EXPERIMENT)
        existing = self.client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.monitor_key = '{key}'", max_results=1
        )
        run_id = existing[0].info.run_id if existing else None
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"monitor-{key}") as run:
            mlflow.set_tags({"monitor_key": key, "status": report["status"], "model_name": self.config.model_name})
            mlflow.log_metrics(metrics)
            mlflow.log_dict(report, "report.json")
            return str(run.info.run_id)

    # -- writing ------------------------------------------------------------------------------

    @_session
    def log_and_register(
        self,
        pipeline: Any,
        params: dict[str, Any],
        metrics: dict[str, float],
        dataset: dict[str, Any],
        X_train: Any,
        y_train: np.ndarray,
        input_example: Any,
        figures: dict[str, Any],
        artifacts: dict[str, dict[str, Any]],
        metadata: dict[str, Any] | None = None,
        model_files: dict[str, bytes] | None = None,
        predict_fn: str = "predict_proba",
    ) -> VersionInfo:
        """One MLflow run: params, metrics, dataset input, figures, model; then a new registered version.

        `model_files` go inside the model directory beside the pickled Pipeline (the compiled graph),
        so that whatever downloads the version gets them, under the same provenance digest."""
        import mlflow
        import mlflow.data
        import mlflow.sklearn
        from mlflow.models import infer_signature

        mlflow.set_experiment(self.config.experiment_name)
        with mlflow.start_run(run_name=f"train-{dataset['hash'][:12]}") as run:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"dataset_hash": dataset["hash"], "dataset_source": dataset["source"]})
            name = f"snapshot-{dataset['hash'][:12]}"
            if hasattr(X_train, "columns"):  # a table
                frame = X_train.assign(__target__=y_train)
                ds = mlflow.data.from_pandas(  # type: ignore[attr-defined]
                    frame, targets="__target__", source=dataset["path"], name=name
                )
            else:
                ds = mlflow.data.from_numpy(  # type: ignore[attr-defined]
                    X_train, targets=y_train, source=dataset["path"], name=name
                )
            mlflow.log_input(ds, context="training", tags={"content_hash": dataset["hash"]})
            for name, figure in figures.items():
                mlflow.log_figure(figure, name)
            for name, payload in artifacts.items():
                mlflow.log_dict(payload, name)
            # pyfunc serves what the app serves (a classifier's predict_proba, a regressor's predict), so
            # `mlflow models serve` answers the same numbers
            model_args: dict[str, Any] = {
                "signature": infer_signature(input_example, getattr(pipeline, predict_fn)(input_example)),
                "input_example": input_example,
                "pip_requirements": _pip_requirements(),
                "serialization_format": "cloudpickle",
                "pyfunc_predict_fn": predict_fn,
                "metadata": metadata,
            }
            run_id = run.info.run_id
            with tempfile.TemporaryDirectory() as tmp:
                extra = Path(tmp) / "extra"
                extra.mkdir()
                for file_name, content in (model_files or {}).items():
                    (extra / file_name).write_bytes(content)
                if self.capabilities.logged_models:
                    info = mlflow.sklearn.log_model(sk_model=pipeline, name="model", **model_args)
                    if model_files:
                        self.client.log_model_artifacts(info.model_id, str(extra))
                    source, model_id = info.model_uri, info.model_id
                else:  # MLflow 2.x (DagsHub): the model directory as run artifacts, registered from the run
                    mlflow.sklearn.save_model(pipeline, str(Path(tmp) / "model"), **model_args)
                    shutil.copytree(extra, Path(tmp) / "model", dirs_exist_ok=True)
                    self.client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")
                    source, model_id = f"runs:/{run_id}/model", None
        version = self._register(source, run_id, model_id)
        log.info("registered %s version %s from run %s", self.config.model_name, version, run_id)
        self.client.set_model_version_tag(self.config.model_name, version, "dataset_hash", dataset["hash"])
        return self.version(version)

    @_session
    def _register(self, source: str, run_id: str, model_id: str | None) -> str:
        """A new version of the registered model (created on first use) on the registry server."""
        from mlflow.exceptions import MlflowException

        name = self.config.model_name
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        mv = self.client.create_model_version(name, source, run_id=run_id, model_id=model_id)
        deadline = time.monotonic() + 300
        while mv.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
            time.sleep(1)
            mv = self.client.get_model_version(name, mv.version)
        if mv.status != "READY":
            raise RegistryError(f"{name} version {mv.version} did not become READY: {mv.status} {mv.status_message}")
        return str(mv.version)

    @_session
    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.config.model_name, alias, str(version))

    @_session
    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.config.model_name, alias)

    @_session
    def tag_version(self, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.config.model_name, str(version), key, _param_value(value))


def load_pipeline(path: Path) -> Any:
    """Unpickle a downloaded model directory: only for files whose digest was verified first."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(path))


def connect(config: RegistryConfig) -> Registry:
    """A Registry whose server has been probed; raises RegistryError saying what is missing."""
    registry = Registry(config)
    registry.probe()
    return registry


def _pip_requirements() -> list[str]:
    """Pin the serving environment to what trained the model (skips MLflow's slow inference)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "scipy", "cloudpickle")]


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:5000]


def _endpoint_exists(response: requests.Response) -> bool:
    """True when the server has the endpoint: it answered, or refused the request with an MLflow error."""
    if response.ok:
        return True
    try:
        code = response.json().get("error_code")
    except ValueError:
        return False  # a web server's own 404 page: no such route
    return bool(code) and code != "ENDPOINT_NOT_FOUND"
