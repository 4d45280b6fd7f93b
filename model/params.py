"""Typed view of config/params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field


class DataParams(BaseModel):
    source: Literal["digits", "image_folder"] = "digits"
    image_folder: Path | None = None
    labels: list[int] = Field(default_factory=lambda: list(range(10)))
    holdout_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 42
    min_samples_per_class: int = 5
    max_class_imbalance: float = 10.0
    include_feedback: bool = True
    profile_bins: int = Field(default=10, ge=2, le=100)


class TrainParams(BaseModel):
    estimator: Literal["mlp", "logistic_regression", "random_forest", "svc", "knn", "dummy"] = "mlp"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    augment_shifts: bool = True


class PromotionParams(BaseModel):
    min_accuracy: float = 0.95
    max_regression: float = 0.005
    max_shift_drop: float = 0.35


class MonitoringParams(BaseModel):
    psi_warn: float = 0.1
    psi_alert: float = 0.2
    chi2_p_alert: float = 0.001
    low_confidence: float = 0.5
    low_confidence_share_alert: float = 0.3
    max_error_rate: float = 0.05
    max_latency_p95_ms: float = 250
    min_feedback_accuracy: float = 0.8
    min_predictions_for_drift: int = 50


class Params(BaseModel):
    task: Literal["image"] = "image"
    data: DataParams = Field(default_factory=lambda: DataParams())
    train: TrainParams = Field(default_factory=lambda: TrainParams())
    promotion: PromotionParams = Field(default_factory=lambda: PromotionParams())
    monitoring: MonitoringParams = Field(default_factory=lambda: MonitoringParams())


def load_params(path: Path, **overrides: Any) -> Params:
    """Read params.yaml; `overrides` replace whole top-level sections (e.g. from a DAG run's conf)."""
    raw = yaml.safe_load(path.read_text()) or {}
    for section, value in overrides.items():
        if value is not None:
            raw[section] = {**raw.get(section, {}), **value}
    return Params.model_validate(raw)
