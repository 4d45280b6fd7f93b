"""The promotion gate: a pure decision from metrics, thresholds and behavioural checks."""

from __future__ import annotations

from dataclasses import dataclass

from model.evaluate import Metrics
from model.params import PromotionParams


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide_promotion(
    challenger: Metrics,
    champion: Metrics | None,
    behaviour: dict[str, object],
    params: PromotionParams,
    baseline: Metrics | None = None,
    metric: str = "accuracy",
) -> Decision:
    """Promote when the challenger beats the majority-class baseline by `min_lift` (and the floor, if
    one is set), does not lose more than `max_regression` to the champion, and behaves.

    Every figure the decision used is in its reason, with the setting that would change it.
    """
    score = challenger.score(metric)
    if score is None:
        return Decision(False, f"rejected: holdout {metric} cannot be computed for this model (promotion.metric)")
    failures = []
    base = baseline.score(metric) if baseline is not None else None
    if base is not None and score < base + params.min_lift:
        failures.append(
            f"holdout {metric} {score:.4f} does not beat the majority-class baseline's {base:.4f} by "
            f"promotion.min_lift={params.min_lift:g}"
        )
    if params.min_accuracy is not None and score < params.min_accuracy:
        floor = params.min_accuracy
        failures.append(f"holdout {metric} {score:.4f} is below the floor promotion.min_accuracy={floor:g}")
    best = champion.score(metric) if champion is not None else None
    if best is not None and score < best - params.max_regression:
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
