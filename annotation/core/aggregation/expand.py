"""K-wise rankings and ratings expanded into pairwise judgments, ties and margins explicit."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

from .types import Outcome, PairwiseJudgment


def ranking_to_pairs(
    *,
    item_id: Hashable,
    annotator_id: Hashable,
    ranking: Sequence[Sequence[Hashable]],
    responses: Sequence[Hashable] | None = None,
    models: Mapping[Hashable, str] | None = None,
    include_ties: bool = True,
) -> list[PairwiseJudgment]:
    """Return one judgment per pair of ranked responses.

    `ranking` lists groups best first; responses in one group are tied, e.g.
    `[["r1"], ["r2", "r3"], ["r4"]]`. A pair's margin is how many groups apart its two
    responses are (0 within a group). Each pair keeps the order of `responses` (the item's own
    order; default: the order the ranking names them), so the expansion adds no orientation
    of its own. Every pair gets the item id `(item_id, a, b)`: consensus is per pair.
    """
    rank: dict[Hashable, int] = {}
    for level, group in enumerate(ranking):
        if not group:
            raise ValueError(f"ranking of item {item_id!r} has an empty group at position {level}")
        for r in group:
            if r in rank:
                raise ValueError(f"ranking of item {item_id!r} names response {r!r} twice")
            rank[r] = level
    order = list(responses) if responses is not None else list(rank)
    if responses is not None and set(order) != set(rank):
        missing = sorted(map(str, set(order) - set(rank)))
        extra = sorted(map(str, set(rank) - set(order)))
        raise ValueError(
            f"ranking of item {item_id!r} must rank every response exactly once "
            f"(missing: {missing}, not in item: {extra})"
        )
    models = models or {}
    out = []
    for a, b in combinations(order, 2):
        gap = rank[b] - rank[a]  # positive: a ranked better
        if gap == 0 and not include_ties:
            continue
        outcome = Outcome.TIE if gap == 0 else (Outcome.A if gap > 0 else Outcome.B)
        out.append(_pair(item_id, annotator_id, a, b, outcome, models, float(abs(gap))))
    return out


def _pair(
    item_id: Hashable, annotator_id: Hashable, a: Hashable, b: Hashable, outcome: Outcome,
    models: Mapping[Hashable, str], margin: float,
) -> PairwiseJudgment:
    """One expanded pair; its item id is `(item_id, a, b)`."""
    return PairwiseJudgment(
        item_id=(item_id, a, b),
        annotator_id=annotator_id,
        response_a_id=a,
        response_b_id=b,
        outcome=outcome,
        model_a=models.get(a),
        model_b=models.get(b),
        margin=margin,
    )


def ratings_to_pairs(
    *,
    item_id: Hashable,
    annotator_id: Hashable,
    scores: Mapping[Hashable, float],
    models: Mapping[Hashable, str] | None = None,
    tie_tolerance: float = 0.0,
    include_ties: bool = True,
) -> list[PairwiseJudgment]:
    """Return one judgment per pair of rated responses; margin is the score difference.

    Scores within `tie_tolerance` of each other are a tie (margin 0). Pairs keep the order of
    `scores`; item ids are `(item_id, a, b)` as for rankings.
    """
    if tie_tolerance < 0:
        raise ValueError(f"tie_tolerance={tie_tolerance} must be >= 0")
    models = models or {}
    out = []
    for (a, sa), (b, sb) in combinations(scores.items(), 2):
        if sa is None or sb is None:
            continue  # an unrated response takes part in no pair
        diff = float(sa) - float(sb)
        tie = abs(diff) <= tie_tolerance
        if tie and not include_ties:
            continue
        outcome = Outcome.TIE if tie else (Outcome.A if diff > 0 else Outcome.B)
        out.append(_pair(item_id, annotator_id, a, b, outcome, models, 0.0 if tie else abs(diff)))
    return out
