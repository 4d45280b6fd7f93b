"""The promotion gate: a pure decision from metrics, thresholds and behavioural checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from model.params import PromotionParams
from model.regression import LOWER_IS_BETTER


class Scored(Protocol):
    """Holdout metrics of either prediction type (evaluate.Metrics, regression.RegressionMetrics)."""

    def score(self, metric: str) -> float | None: ...


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide_promotion(
    challenger: Scored,
    champion: Scored | None,
    behaviour: dict[str, object],
    params: PromotionParams,
    baseline: Scored | None = None,
    metric: str = "accuracy",
    champion_behaviour: dict[str, object] | None = None,
) -> Decision:
    """Promote when the challenger beats the trivial baseline (majority class, or the mean) by
    `min_lift` (and the floor, if one is set), does not lose more than `max_regression` to the
    champion, behaves, and scores no worse than the champion on the kind's own evaluation sets (the
    behaviour checks named `<set>_accuracy`, e.g. digits as people upload them). For an error metric
    (rmse, mae: lower is better) both are shares: the challenger must be `min_lift` below the
    baseline's error, and within `max_regression` above the champion's.

    Every figure the decision used is in its reason, with the setting that would change it.
    """
    score = challenger.score(metric)
    if score is None:
        return Decision(False, f"rejected: holdout {metric} cannot be computed for this model (promotion.metric)")
    failures = []
    lower = metric in LOWER_IS_BETTER
    trivial = "mean predictor" if metric in (*LOWER_IS_BETTER, "r2") else "majority-class baseline"
    base = baseline.score(metric) if baseline is not None else None
    if base is not None and (score > base * (1 - params.min_lift) if lower else score < base + params.min_lift):
        failures.append(
            f"holdout {metric} {score:.4f} does not beat the {trivial}'s {base:.4f} by "
            f"promotion.min_lift={params.min_lift:g}{' (a share)' if lower else ''}"
        )
    if params.min_accuracy is not None and (score > params.min_accuracy if lower else score < params.min_accuracy):
        floor = params.min_accuracy
        side = "above the ceiling" if lower else "below the floor"
        failures.append(f"holdout {metric} {score:.4f} is {side} promotion.min_accuracy={floor:g}")
    best = champion.score(metric) if champion is not None else None
    worse = (
        best is not None and score > best * (1 + params.max_regression)
        if lower
        else best is not None and score < best - params.max_regression
    )
    if best is not None and worse:
        failures.append(
            f"holdout {metric} {score:.4f} loses more than promotion.max_regression={params.max_regression:g} "
            f"to the champion's {best:.4f}"
        )
    if not behaviour.get("predicts_example"):
        failures.append("it cannot predict its own input example")
    if "handles_unknown_categories" in behaviour and not behaviour["handles_unknown_categories"]:
        failures.append("it fails on categories it did not see in training")
    if "robust_to_shift" in behaviour and not behaviour["robust_to_shift"]:
        failures.append(
            f"a one-pixel shift costs {behaviour.get('shift_accuracy_drop')} accuracy (allowed {params.max_shift_drop})"
        )
    for check, value in behaviour.items():  # a kind's evaluation sets (`<set>_accuracy`): no worse than the champion's
        theirs = (champion_behaviour or {}).get(check)
        if check.endswith("_accuracy") and isinstance(value, float) and isinstance(theirs, float):
            if value < theirs - params.max_regression:
                failures.append(
                    f"{check} {value:.4f} loses more than promotion.max_regression={params.max_regression:g} "
                    f"to the champion's {theirs:.4f}"
                )
    figures = f"model {score:.4f}, baseline {_or_none(base)}, floor {_or_none(params.min_accuracy)}"
    if failures:
        return Decision(False, "rejected: " + "; ".join(failures) + f" ({metric}: {figures})")
    if best is None:
        return Decision(True, f"promoted: first champion, holdout {metric} {score:.4f} ({figures})")
    return Decision(
        True,
        f"promoted: holdout {metric} {score:.4f} vs champion {best:.4f} "
        f"(tolerance {params.max_regression:g}; {figures})",
    )


def _or_none(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"
