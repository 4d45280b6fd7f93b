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
) -> Decision:
    """Promote when the challenger clears the floor, does not regress beyond tolerance, and behaves."""
    failures = []
    if challenger.accuracy < params.min_accuracy:
        failures.append(f"holdout accuracy {challenger.accuracy:.4f} is below the floor {params.min_accuracy:.4f}")
    if champion is not None and challenger.accuracy < champion.accuracy - params.max_regression:
        failures.append(
            f"holdout accuracy {challenger.accuracy:.4f} loses more than {params.max_regression:.4f} "
            f"to the champion's {champion.accuracy:.4f}"
        )
    if not behaviour.get("predicts_example"):
        failures.append("it cannot predict its own input example")
    if "handles_unknown_categories" in behaviour and not behaviour["handles_unknown_categories"]:
        failures.append("it fails on categories it did not see in training")
    if "robust_to_shift" in behaviour and not behaviour["robust_to_shift"]:
        failures.append(
            f"a one-pixel shift costs {behaviour.get('shift_accuracy_drop')} accuracy (allowed {params.max_shift_drop})"
        )
    if failures:
        return Decision(False, "rejected: " + "; ".join(failures))
    if champion is None:
        return Decision(True, f"promoted: first champion, holdout accuracy {challenger.accuracy:.4f}")
    return Decision(
        True,
        f"promoted: holdout accuracy {challenger.accuracy:.4f} vs champion {champion.accuracy:.4f} "
        f"(tolerance {params.max_regression:.4f})",
    )
