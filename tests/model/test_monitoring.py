import numpy as np

from model.data import split
from model.kinds.digits import KIND as DIGITS
from model.kinds.digits import load_digits_dataset, reference_profile
from model.monitoring import ALERT, OK, SKIPPED, drift_check, psi, statistics_check
from model.params import MonitoringParams

PARAMS = MonitoringParams(min_predictions_for_drift=50)


def setup_module():
    global PROFILE, TRAIN, HOLD
    data = load_digits_dataset()
    TRAIN, HOLD = split(data, 0.25, 42)
    PROFILE = reference_profile(TRAIN, list(range(10)), 10)


def served(X):
    """The digits kind's drift features of rows as the prediction records store them."""
    return DIGITS.drift(PROFILE, [{"features": row} for row in X.tolist()])


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    ref = np.array([10, 20, 30, 40])
    assert psi(ref, ref * 3) < 1e-9
    assert psi(ref, np.array([40, 30, 20, 10])) > 0.2


def test_holdout_does_not_drift():
    result = drift_check(PROFILE, served(HOLD.X), HOLD.y.tolist(), [0.9] * len(HOLD), PARAMS)
    assert result["status"] == OK, result["message"]
    assert len(result["psi"]) == 64


def test_inverted_images_drift():
    inverted = 16 - HOLD.X
    result = drift_check(PROFILE, served(inverted), HOLD.y.tolist(), [0.9] * len(HOLD), PARAMS)
    assert result["status"] == ALERT
    assert "PSI over 0.2" in result["message"] and result["features_over_alert"] > 10


def test_label_shift_and_low_confidence_alert():
    result = drift_check(PROFILE, served(HOLD.X), [1] * len(HOLD), [0.3] * len(HOLD), PARAMS)
    assert result["status"] == ALERT
    assert "predicted-label distribution" in result["message"] and "confidence below" in result["message"]


def test_too_few_predictions_is_an_explicit_skip():
    assert drift_check(PROFILE, served(HOLD.X[:10]), HOLD.y[:10].tolist(), [0.9] * 10, PARAMS)["status"] == SKIPPED


def test_statistics_limits():
    stats = {"total": 100, "error_rate": 0.2, "latency_ms": {"p95": 900.0}, "feedback": {"accuracy": 0.5}}
    result = statistics_check(stats, PARAMS)
    assert result["status"] == ALERT
    for needle in ("error rate", "latency p95", "feedback accuracy"):
        assert needle in result["message"]
    fine = {"total": 100, "error_rate": 0.0, "latency_ms": {"p95": 2.0}, "feedback": {"accuracy": None}}
    assert statistics_check(fine, PARAMS)["status"] == OK
