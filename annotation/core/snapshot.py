"""Snapshot math: stored judgments (as plain rows) to pairs, consensus, comparisons, statistics
and a leaderboard.

Plain rows in, plain rows out: no ORM and no Django. `annotation.services.datasets` reads the
rows, calls these, and writes what they return; the live dashboard calls the same functions, so
a dataset and the page that previews it agree.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotation.core import aggregation as agg

DIGITS = 6  # margins and confidences are stored (and hashed) rounded to this many digits


class SnapshotError(ValueError):
    """A reason the snapshot cannot be computed, worded for the manager who asked for it."""


@dataclass(frozen=True, slots=True)
class JudgmentRow:
    """A stored judgment as plain data (answers against response ids)."""

    judgment_id: int
    item_id: int
    annotator_id: int
    outcome: str
    preferred_response_id: int | None
    strength: int | None
    answer: dict[str, Any]
    display_order: list[int]
    is_gold: bool = False
    gold: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One aggregated comparison, before the texts are attached."""

    item_id: int
    chosen_id: int
    rejected_id: int
    chosen_model: str
    rejected_model: str
    outcome: str  # "chosen" | "tie"
    margin: float
    confidence: float
    n_judgments: int


@dataclass(frozen=True)
class JudgedPairs:
    pairs: list[agg.PairwiseJudgment]
    used: list[tuple[int, bool]]  # (judgment id, on a gold item) of judgments that gave a pair
    gold_answers: dict[int, tuple[int, int]]  # annotator -> (correct, total) on pairwise gold checks


def _pairwise_outcome(row: JudgmentRow, a: int) -> agg.Outcome:
    if row.outcome == "preferred":
        return agg.Outcome.A if row.preferred_response_id == a else agg.Outcome.B
    return agg.Outcome(row.outcome)  # tie | both_bad


def _gold_outcome(gold: Mapping[str, Any] | None, a: int) -> agg.Outcome | None:
    if not gold:
        return None
    if gold.get("outcome") == "preferred":
        return agg.Outcome.A if gold.get("preferred_response_id") == a else agg.Outcome.B
    return agg.Outcome(gold["outcome"])


def _rating_score(scores: Mapping[str, Any], criterion: str | None) -> float | None:
    if criterion is not None:
        value = scores.get(criterion)
        return None if value is None else float(value)
    values = [float(v) for v in scores.values() if v is not None]
    return sum(values) / len(values) if values else None


def snapshot_pairs(
    rows: Iterable[JudgmentRow],
    *,
    kind: str,
    item_responses: Mapping[int, Sequence[int]],
    models: Mapping[int, str],
    params: Mapping[str, Any],
) -> JudgedPairs:
    """Return every judgment as pairwise judgments: pairwise as they are, rankings and ratings expanded.

    Pairwise items keep their own id; an expanded pair's item id is `(item, a, b)`. Gold checks
    are only scored on pairwise campaigns; on the other kinds their judgments are left out.
    """
    pairs: list[agg.PairwiseJudgment] = []
    used: list[tuple[int, bool]] = []
    gold_answers: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    criterion = params.get("rating_criterion")
    for row in rows:
        order = list(item_responses.get(row.item_id, ()))
        named = {r: (models.get(r) or None) for r in order}
        if kind == "pairwise":
            if len(order) != 2:
                continue
            a, b = order
            gold = _gold_outcome(row.gold, a) if row.is_gold else None
            if row.is_gold and gold is None:
                continue
            outcome = _pairwise_outcome(row, a)
            shown_first = row.display_order[0] if row.display_order and row.display_order[0] in (a, b) else None
            pairs.append(agg.PairwiseJudgment(
                item_id=row.item_id, annotator_id=row.annotator_id, response_a_id=a, response_b_id=b,
                outcome=outcome, strength=row.strength, shown_first_response_id=shown_first,
                model_a=named[a], model_b=named[b], is_gold=row.is_gold, gold_outcome=gold,
            ))
            used.append((row.judgment_id, row.is_gold))
            if row.is_gold:
                tally = gold_answers[row.annotator_id]
                tally[0] += int(outcome == gold)
                tally[1] += 1
            continue
        if row.is_gold:
            continue
        if kind == "ranking":
            expanded = agg.ranking_to_pairs(
                item_id=row.item_id, annotator_id=row.annotator_id, ranking=row.answer.get("ranking") or [],
                responses=order, models=named,
            )
        elif kind == "rating":
            ratings = row.answer.get("ratings") or {}
            scores = {r: _rating_score(ratings.get(str(r)) or {}, criterion) for r in order}
            if criterion is not None and all(s is None for s in scores.values()):
                raise SnapshotError(
                    f"params.rating_criterion: {criterion!r} is not a criterion of this campaign's ratings"
                )
            expanded = agg.ratings_to_pairs(
                item_id=row.item_id, annotator_id=row.annotator_id, scores=scores, models=named,
                tie_tolerance=params.get("rating_tie_tolerance", 0.0),
            )
        else:
            raise SnapshotError(f"campaign kind {kind!r} cannot be aggregated")
        if expanded:
            pairs.extend(expanded)
            used.append((row.judgment_id, False))
    return JudgedPairs(pairs, used, {a: (c, t) for a, (c, t) in gold_answers.items()})


def snapshot_consensus(
    pairs: Sequence[agg.PairwiseJudgment], *, method: str, params: Mapping[str, Any]
) -> agg.ConsensusResult:
    """Return consensus per (item, pair) by the dataset's method."""
    both_bad = params.get("both_bad", "tie")
    if method == "majority":
        return agg.majority_vote(pairs, both_bad=both_bad)
    if method == "dawid_skene":
        return agg.dawid_skene(pairs, max_iter=params["max_iter"], use_gold=params["use_gold"], both_bad=both_bad)
    if method == "reliability_weighted":
        return agg.reliability_weighted(
            pairs, prior_accuracy=params["prior_accuracy"], prior_strength=params["prior_strength"],
            max_iter=params["max_iter"], use_gold=params["use_gold"], both_bad=both_bad,
        )
    raise SnapshotError(f"method: {method!r} is not an aggregation method")


def item_of(key: Hashable) -> int:
    return key[0] if isinstance(key, tuple) else key  # expanded pairs are keyed (item, a, b)


def snapshot_comparisons(
    consensus: agg.ConsensusResult, regular: Sequence[agg.PairwiseJudgment], *, include_ties: bool
) -> list[ComparisonRow]:
    """Return one row per judged pair of a regular item, in (item, response, response) order.

    The margin of a decided pair is the mean margin (strength, rank gap or score difference) of
    the judgments that agree with the consensus winner; 0 for a tie.
    """
    by_key: dict[Hashable, list[agg.PairwiseJudgment]] = defaultdict(list)
    model = {}
    for p in regular:
        by_key[p.item_id].append(p)
        model[p.response_a_id], model[p.response_b_id] = p.model_a or "", p.model_b or ""
    out = []
    for c in consensus.items:
        group = by_key.get(c.item_id)
        if group is None:  # a gold item: it weighed annotators, it is not a comparison
            continue
        winner = c.winner_id
        if winner is None:
            if not include_ties:
                continue
            chosen, rejected, outcome, margin = c.response_a_id, c.response_b_id, "tie", 0.0
        else:
            chosen = winner
            rejected = c.response_b_id if winner == c.response_a_id else c.response_a_id
            agreeing = [agg.judgment_margin(p) for p in group if p.winner_id == winner]
            outcome, margin = "chosen", (sum(agreeing) / len(agreeing) if agreeing else 0.0)
        out.append(ComparisonRow(
            item_id=item_of(c.item_id), chosen_id=chosen, rejected_id=rejected, chosen_model=model.get(chosen, ""),
            rejected_model=model.get(rejected, ""), outcome=outcome, margin=round(float(margin), DIGITS),
            confidence=round(min(max(float(c.confidence), 0.0), 1.0), DIGITS), n_judgments=c.n_judgments,
        ))
    out.sort(key=lambda r: (r.item_id, min(r.chosen_id, r.rejected_id), max(r.chosen_id, r.rejected_id)))
    return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), DIGITS)


def _alpha(pairs: Sequence[agg.PairwiseJudgment], level: str) -> float | None:
    try:
        return _finite(agg.krippendorff_alpha(pairs, level=level))
    except ValueError:  # no item judged by two annotators: agreement is undefined, not an error
        return None


def snapshot_stats(
    *,
    consensus: agg.ConsensusResult,
    pairs: Sequence[agg.PairwiseJudgment],
    comparisons: Sequence[ComparisonRow],
    pseudonyms: Mapping[int, str],
    gold: Mapping[int, tuple[int, int]],
) -> dict[str, Any]:
    """Return the dataset's quality statistics as JSON-ready values (None where undefined)."""
    regular = [p for p in pairs if not p.is_gold]
    multi = defaultdict(set)
    for p in regular:
        multi[p.item_id].add(p.annotator_id)
    overall, per_annotator = agg.position_bias(regular)
    conf = np.array([c.confidence for c in comparisons], dtype=float)
    edges = np.round(np.linspace(0.0, 1.0, 11), 1)
    counts, _ = np.histogram(conf, bins=edges)
    annotators = []
    n_regular = defaultdict(int)
    for p in regular:
        n_regular[p.annotator_id] += 1
    for a in sorted(consensus.annotators, key=lambda x: pseudonyms[x]):
        r = consensus.annotators[a]
        correct, total = gold.get(a, (0, 0))
        bias = per_annotator.get(a)
        annotators.append({
            "annotator": pseudonyms[a],
            "judgments": n_regular.get(a, 0),
            "reliability": _finite(r.accuracy),
            "weight": _finite(r.weight),
            "gold_correct": correct,
            "gold_total": total,
            "gold_accuracy": _finite(correct / total) if total else None,
            "first_shown_win_rate": _finite(bias.rate) if bias else None,
        })
    return {
        "agreement": {
            "krippendorff_alpha_nominal": _alpha(regular, "nominal"),
            "krippendorff_alpha_ordinal": _alpha(regular, "ordinal"),
            "items_with_two_or_more": sum(1 for s in multi.values() if len(s) >= 2),
        },
        "position_bias": {
            "first_shown_win_rate": _finite(overall.rate),
            "decisive": overall.decisive,
            "first_wins": overall.first_wins,
            "ties": overall.ties,
            "p_value": _finite(overall.p_value),
            "ci_low": _finite(overall.ci_low),
            "ci_high": _finite(overall.ci_high),
        },
        "consensus": {
            "method": consensus.method,
            "iterations": consensus.iterations,
            "outcomes": {
                "chosen": sum(1 for c in comparisons if c.outcome == "chosen"),
                "tie": sum(1 for c in comparisons if c.outcome == "tie"),
            },
            "confidence": {
                "mean": _finite(float(conf.mean())) if len(conf) else None,
                "median": _finite(float(np.median(conf))) if len(conf) else None,
                "min": _finite(float(conf.min())) if len(conf) else None,
                "histogram": [
                    {"low": float(edges[k]), "high": float(edges[k + 1]), "count": int(counts[k])}
                    for k in range(len(counts))
                ],
            },
        },
        "annotators": annotators,
    }


_REGULARIZED_PRIOR = 0.1


def snapshot_leaderboard(regular: Sequence[agg.PairwiseJudgment], *, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Bradley–Terry leaderboard of the models (Elo scale, 95% bootstrap intervals).

    Fitted on the individual judgments (ties half a win each, as Chatbot Arena does); ranks are
    CI-aware: 1 + the number of models whose interval lies wholly above this one's.
    """
    rounds = params.get("bootstrap_rounds", 1000)
    meta: dict[str, Any] = {"ties": "half", "confidence": 0.95, "bootstrap_rounds": rounds, "scale": "elo",
                            "prior": 0.0, "rows": [], "note": ""}
    table = agg.pair_table_from_judgments(regular)
    if table.n_models < 2 or not len(table.i):
        meta["note"] = "Fewer than two models were compared (responses need model names); no leaderboard."
        return meta
    try:
        board = agg.leaderboard(table, rounds=rounds, seed=params.get("seed", 0), confidence=0.95)
    except ValueError as exc:
        # A model that never lost (or never won) has no finite maximum-likelihood strength;
        # a weak prior keeps the scores finite and the note says so.
        board = agg.leaderboard(table, rounds=rounds, seed=params.get("seed", 0), confidence=0.95,
                                prior=_REGULARIZED_PRIOR)
        meta["prior"] = _REGULARIZED_PRIOR
        meta["note"] = f"Scores are regularized (Gaussian prior {_REGULARIZED_PRIOR}): {exc}"
    meta["failed_rounds"] = board.failed_rounds
    meta["rows"] = [
        {"model": r["model"], "score": round(r["score"], 2), "ci_low": round(r["lower"], 2),
         "ci_high": round(r["upper"], 2), "rank": r["rank"], "n": r["games"]}
        for r in board.rows()
    ]
    return meta
