"""Drift and health judgements for the daily monitor: pure functions over counts and thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chisquare

from model.params import MonitoringParams

OK, WARN, ALERT, SKIPPED = "ok", "warn", "alert", "skipped"
_EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two histograms over the same bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = np.clip(ref / max(ref.sum(), 1.0), _EPS, None)
    cur = np.clip(cur / max(cur.sum(), 1.0), _EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def label_shift_pvalue(reference_counts: list[int], predicted_counts: list[int]) -> float:
    """Chi-square test of predicted labels against the training label distribution."""
    observed = np.asarray(predicted_counts, dtype=np.float64)
    expected = np.asarray(reference_counts, dtype=np.float64) + _EPS
    expected = expected / expected.sum() * observed.sum()
    return float(chisquare(observed, expected).pvalue)


def drift_check(
    profile: dict[str, Any],
    features: tuple[list[float], list[str]],
    labels: list[Any],
    confidences: list[float],
    params: MonitoringParams,
) -> dict[str, Any]:
    """PSI per feature, label-distribution shift and low-confidence share, with a status.

    `features` are the PSIs of the served inputs' features and their names (the task kind's `drift`);
    `labels` the predicted labels, or values for a regressor.
    """
    n = len(labels)
    if n < params.min_predictions_for_drift:
        return {
            "status": SKIPPED,
            "message": f"{n} predictions in the window; drift needs at least {params.min_predictions_for_drift}",
            "predictions": n,
        }
    psis, names = features
    if "target" in profile:  # regression: `labels` are predicted values, compared with the training target
        from model.regression import value_psi

        psis, names = [*psis, value_psi(profile["target"], labels)], [*names, "(predicted value)"]
        counts, pvalue, low_share = [], 1.0, 0.0
    else:
        counts = [int(sum(1 for v in labels if str(v) == str(label))) for label in profile["labels"]]
        pvalue = label_shift_pvalue(profile["label_counts"], counts)
        low_share = float(np.mean(np.asarray(confidences) < params.low_confidence))
    max_psi = max(psis)
    worst = int(np.argmax(psis))
    over_alert = [j for j, v in enumerate(psis) if v > params.psi_alert]
    problems, warnings = [], []
    if over_alert:
        problems.append(
            f"drift: PSI over {params.psi_alert} on {len(over_alert)} features (max {max_psi:.3f} on {names[worst]})"
        )
    elif max_psi > params.psi_warn:
        warnings.append(f"drift: PSI {max_psi:.3f} on {names[worst]} is over the warning level {params.psi_warn}")
    if pvalue < params.chi2_p_alert:
        problems.append(f"drift: predicted-label distribution shifted (chi-square p={pvalue:.2e})")
    if low_share > params.low_confidence_share_alert:
        problems.append(
            f"drift: {low_share:.1%} of predictions have confidence below {params.low_confidence} "
            f"(limit {params.low_confidence_share_alert:.0%})"
        )
    status = ALERT if problems else WARN if warnings else OK
    return {
        "status": status,
        "message": "; ".join(problems + warnings) or f"no drift (max PSI {max_psi:.3f})",
        "predictions": n,
        "psi": psis,
        "features": names,
        "max_psi": round(max_psi, 6),
        "features_over_alert": len(over_alert),
        "label_counts": counts,
        "label_chi2_pvalue": pvalue,
        "low_confidence_share": round(low_share, 6),
    }


def statistics_check(stats: dict[str, Any], params: MonitoringParams) -> dict[str, Any]:
    """Error rate, latency p95 and live accuracy against their limits."""
    problems = []
    if stats["error_rate"] > params.max_error_rate:
        problems.append(f"error rate {stats['error_rate']:.2%} over {params.max_error_rate:.2%}")
    p95 = stats["latency_ms"]["p95"]
    if p95 is not None and p95 > params.max_latency_p95_ms:
        problems.append(f"latency p95 {p95:.1f} ms over {params.max_latency_p95_ms:.0f} ms")
    accuracy = stats["feedback"]["accuracy"]
    if accuracy is not None and accuracy < params.min_feedback_accuracy:
        problems.append(f"feedback accuracy {accuracy:.2%} below {params.min_feedback_accuracy:.0%}")
    for error in ("mae", "rmse"):  # regression: the live error from feedback, against its limit if one is set
        value, limit = stats["feedback"].get(error), getattr(params, f"max_feedback_{error}")
        if value is not None and limit is not None and value > limit:
            problems.append(f"feedback {error.upper()} {value:.4g} over monitoring.max_feedback_{error}={limit:g}")
    return {
        "status": ALERT if problems else OK,
        "message": "; ".join(problems) or f"{stats['total']} predictions, error rate {stats['error_rate']:.2%}",
    }


def overall(checks: dict[str, dict[str, Any]]) -> str:
    statuses = {c.get("status") for c in checks.values()}
    return ALERT if ALERT in statuses else WARN if WARN in statuses else OK
