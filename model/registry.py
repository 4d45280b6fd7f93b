"""All access to the MLflow tracking server and model registry goes through this module.

The same code talks to a local `mlflow server` and to DagsHub's hosted MLflow: the difference is
only the tracking URI and the basic-auth credentials in `RegistryConfig`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: list[str]
    source: str


class Registry:
    """A thin adapter over MlflowClient; construct with `connect()` to probe the server first."""

    def __init__(self, config: RegistryConfig) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.config = config
        # MLflow's client reads credentials and HTTP behaviour only from the environment.
        for var, value in (
            ("MLFLOW_TRACKING_USERNAME", config.username),
            ("MLFLOW_TRACKING_PASSWORD", config.password),
        ):
            if value:
                os.environ[var] = value
            else:
                os.environ.pop(var, None)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.http_retries)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(config.http_timeout))
        mlflow.set_tracking_uri(config.tracking_uri)
        self.client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)

    # -- capability probe ---------------------------------------------------------------------

    def probe(self) -> dict[str, bool]:
        """Check the server is reachable, authenticates us, and has a registry with aliases."""
        base = self.config.tracking_uri.rstrip("/")
        if not base.startswith(("http://", "https://")):
            return {"reachable": True, "registry": True, "aliases": True}
        auth = (self.config.username, self.config.password or "") if self.config.username else None

        def get(path: str, **params: Any) -> requests.Response:
            try:
                return requests.get(f"{base}{path}", params=params, auth=auth, timeout=self.config.http_timeout)
            except requests.RequestException as exc:
                raise RegistryError(f"MLflow at {base} is unreachable: {exc}") from exc

        response = get("/api/2.0/mlflow/experiments/search", max_results=1)
        if response.status_code in (401, 403):
            raise RegistryError(
                f"MLflow at {base} refused our credentials (HTTP {response.status_code}): check "
                "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or DAGSHUB_TOKEN)"
            )
        if response.status_code != 200:
            raise RegistryError(f"MLflow at {base} answered HTTP {response.status_code}: {response.text[:200]}")
        response = get("/api/2.0/mlflow/registered-models/search", max_results=1)
        if response.status_code != 200:
            raise RegistryError(
                f"MLflow at {base} has no usable model registry (HTTP {response.status_code}: "
                f"{response.text[:200]}); the platform needs one to register and promote models"
            )
        response = get("/api/2.0/mlflow/registered-models/alias", name="__probe__", alias=CHAMPION)
        if response.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in response.text:
            return {"reachable": True, "registry": True, "aliases": True}
        if response.status_code == 200:
            return {"reachable": True, "registry": True, "aliases": True}
        raise RegistryError(
            f"MLflow at {base} does not support model aliases (HTTP {response.status_code}: "
            f"{response.text[:200]}); MLflow >= 2.3 is needed"
        )

    # -- reading ------------------------------------------------------------------------------

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.config.model_name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return self._info(mv)

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

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def load_model(self, version: str, dst: Path) -> Any:
        """Download version `version` into `dst` (a cache dir) and load the sklearn Pipeline."""
        import mlflow.sklearn

        dst.mkdir(parents=True, exist_ok=True)
        uri = f"models:/{self.config.model_name}/{version}"
        return mlflow.sklearn.load_model(uri, dst_path=str(dst))

    def download_version(self, version: str, dst: Path) -> Path:
        """Download the model directory of `version` into `dst` and return its path."""
        import mlflow.artifacts

        dst.mkdir(parents=True, exist_ok=True)
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.config.model_name}/{version}", dst_path=str(dst)
        )
        return Path(path)

    def run_json(self, run_id: str, artifact: str) -> dict[str, Any]:
        """A JSON artifact of a run, e.g. the reference profile logged at training."""
        import mlflow.artifacts

        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
            return json.loads(Path(path).read_text())  # type: ignore[no-any-return]

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
    ) -> VersionInfo:
        """One MLflow run: params, metrics, dataset input, figures, model; then a new registered version."""
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
            signature = infer_signature(input_example, pipeline.predict_proba(input_example))
            info = mlflow.sklearn.log_model(
                sk_model=pipeline,
                name="model",
                signature=signature,
                input_example=input_example,
                pip_requirements=_pip_requirements(),
                serialization_format="cloudpickle",
                registered_model_name=self.config.model_name,
                metadata=metadata,
            )
            version = str(info.registered_model_version)
            log.info("registered %s version %s from run %s", self.config.model_name, version, run.info.run_id)
        self.client.set_model_version_tag(self.config.model_name, version, "dataset_hash", dataset["hash"])
        return self.version(version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.config.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.config.model_name, alias)

    def tag_version(self, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.config.model_name, str(version), key, _param_value(value))


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
