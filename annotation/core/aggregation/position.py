"""Position bias: how often the response shown first (left) wins."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from scipy.stats import binomtest

from .types import PairwiseJudgment


@dataclass(frozen=True, slots=True)
class PositionBias:
    """First-shown win rate over decisive judgments (ties and both-bad are counted apart).

    `p_value` is the two-sided exact binomial test of a 50 % first-shown win rate; `ci_low`,
    `ci_high` its Wilson interval at `confidence`.
    """

    annotator_id: Hashable | None  # None: all annotators together
    decisive: int
    first_wins: int
    ties: int
    rate: float
    p_value: float
    ci_low: float
    ci_high: float


def _bias(
    annotator_id: Hashable | None, first: int, decisive: int, ties: int, confidence: float
) -> PositionBias:
    if decisive == 0:
        nan = float("nan")
        return PositionBias(annotator_id, 0, 0, ties, nan, 1.0, nan, nan)
    test = binomtest(first, decisive, 0.5)
    ci = test.proportion_ci(confidence_level=confidence, method="wilson")
    return PositionBias(
        annotator_id,
        decisive,
        first,
        ties,
        first / decisive,
        float(test.pvalue),
        float(ci.low),
        float(ci.high),
    )


def position_bias(
    judgments: Sequence[PairwiseJudgment], *, confidence: float = 0.95
) -> tuple[PositionBias, dict[Hashable, PositionBias]]:
    """Return (overall, per annotator) first-shown win rates.

    Judgments without `shown_first_response_id` (e.g. expanded rankings) are skipped.
    """
    per: dict[Hashable, list[int]] = {}
    for j in judgments:
        if j.shown_first_response_id is None:
            continue
        c = per.setdefault(j.annotator_id, [0, 0, 0])  # first wins, decisive, ties
        winner = j.winner_id
        if winner is None:
            c[2] += 1
        else:
            c[1] += 1
            c[0] += winner == j.shown_first_response_id
    totals = [sum(c[k] for c in per.values()) for k in range(3)]
    overall = _bias(None, totals[0], totals[1], totals[2], confidence)
    return overall, {a: _bias(a, c[0], c[1], c[2], confidence) for a, c in per.items()}
