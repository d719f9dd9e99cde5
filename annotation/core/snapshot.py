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
    outcome: str  # "chosen" | "tie" | "undecided"
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


# --- decided, tie or undecided -------------------------------------------------------------------

DEFAULT_METHOD = "reliability_weighted"
# Why the default method is the default, with the numbers bench/aggregate.py measured (bench/README.md,
# "Aggregation": 2,000 open items, 40 annotators of whom 20 % spammers and 15 % position-biased, 3 seeds).
DEFAULT_METHOD_REASON = (
    "Reliability-weighted voting is the default because it was the most accurate method at every overlap "
    "in bench/aggregate.py (synthetic annotators, 20 % of them spammers): 0.745 against majority's 0.580 "
    "at overlap 2, 0.797 against 0.700 at overlap 3 (+9.7 points) and 0.885 against 0.790 at overlap 5 "
    "(+9.5 points); Dawid–Skene came within 0.3 points at overlap 2 and 1.3 at overlap 3."
)
DEFAULT_MIN_CONFIDENCE = 0.6
DEFAULT_MIN_JUDGMENTS = 2
# The flags that hold an item back from training (FLAG_REASONS in annotation.core.judging);
# "can't judge" says something about the annotator, not about the item.
HOLDING_FLAGS = ("unsafe", "private_data", "broken")
DEFAULT_FLAG_MIN_ANNOTATORS = 1

# Why a comparison is not a decided pair, worded for the card and the dataset page.
HELD_BACK_REASONS = {
    "tie": "the consensus preferred neither response",
    "too_few_judgments": "fewer judgments than min_judgments agree with the consensus winner",
    "below_confidence": "the consensus confidence is below min_confidence",
}


def default_min_judgments(overlap: int | None) -> int:
    """Return the min_judgments a campaign of this overlap gets by default: 2, or 1 at overlap 1.

    Two agreeing judgments are the least that is a consensus (a 1–1 split never is); a campaign that
    asks one judgment per item has only one to give, so there the default asks one.
    """
    return DEFAULT_MIN_JUDGMENTS if overlap is None else max(1, min(DEFAULT_MIN_JUDGMENTS, overlap))


# --- dataset parameters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    default: Any
    check: Any  # callable(value) -> bool
    expect: str  # what a valid value looks like, for the error
    methods: tuple[str, ...] = ("majority", "dawid_skene", "reliability_weighted")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


_WEIGHTED = ("dawid_skene", "reliability_weighted")
PARAMS: dict[str, _Param] = {
    "both_bad": _Param("tie", lambda v: v in ("tie", "drop"), "'tie' (both bad counts as a tie) or 'drop'"),
    "include_ties": _Param(True, lambda v: isinstance(v, bool), "true or false (keep tied comparisons as rows)"),
    "min_confidence": _Param(
        DEFAULT_MIN_CONFIDENCE, lambda v: _is_num(v) and 0 <= v <= 1,
        "a number from 0 to 1 (a pair whose consensus confidence is lower is exported undecided)",
    ),
    "min_judgments": _Param(
        DEFAULT_MIN_JUDGMENTS, lambda v: _is_int(v) and 1 <= v <= 100,
        "an integer from 1 to 100 (judgments that must agree with the winner; fewer: undecided)",
    ),
    "flag_min_annotators": _Param(
        DEFAULT_FLAG_MIN_ANNOTATORS, lambda v: _is_int(v) and 1 <= v <= 100,
        "an integer from 1 to 100 (annotators who flag an item unsafe, private data or broken before it is "
        "held back from training)",
    ),
    "keep_flagged": _Param(
        False, lambda v: isinstance(v, bool), "true or false (keep flagged items in the training exports)"
    ),
    "use_gold": _Param(True, lambda v: isinstance(v, bool), "true or false", _WEIGHTED),
    "max_iter": _Param(100, lambda v: _is_int(v) and 1 <= v <= 1000, "an integer from 1 to 1000", _WEIGHTED),
    "prior_accuracy": _Param(
        0.6, lambda v: _is_num(v) and 1 / 3 < v < 1, "a number between 1/3 and 1", ("reliability_weighted",)
    ),
    "prior_strength": _Param(
        4.0, lambda v: _is_num(v) and 0 < v <= 1000, "a number above 0", ("reliability_weighted",)
    ),
    "rating_criterion": _Param(
        None, lambda v: v is None or (isinstance(v, str) and v != ""), "a criterion name, or null for their mean"
    ),
    "rating_tie_tolerance": _Param(0.0, lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "bootstrap_rounds": _Param(1000, lambda v: _is_int(v) and 0 <= v <= 10000, "an integer from 0 to 10000"),
    "seed": _Param(0, lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}




def param_default(name: str, overlap: int | None = None) -> Any:
    """Return a parameter's default (min_judgments follows the campaign's overlap)."""
    return default_min_judgments(overlap) if name == "min_judgments" else PARAMS[name].default


def default_params(method: str = DEFAULT_METHOD, *, overlap: int | None = None) -> dict[str, Any]:
    """Return every parameter of `method` at its default: what the dataset form starts from, and
    what the items page and the dashboard decide by."""
    return {name: param_default(name, overlap) for name, p in sorted(PARAMS.items()) if method in p.methods}


@dataclass(frozen=True, slots=True)
class Decision:
    """The consensus on one judged pair of a regular item, after the dataset's thresholds.

    `outcome` is "chosen" (a decided pair: `winner_id` preferred), "tie", or "undecided" (the
    method leaned one way but not enough: `reason` says which threshold held it back). `support`
    counts the judgments that agree with the method's winner; `margin` is their mean margin.
    """

    key: Hashable
    item_id: int
    response_a_id: int
    response_b_id: int
    outcome: str
    winner_id: int | None
    reason: str  # "" for a decided pair; else a key of HELD_BACK_REASONS
    confidence: float
    n_judgments: int
    support: int
    margin: float


def snapshot_decisions(
    consensus: agg.ConsensusResult,
    regular: Sequence[agg.PairwiseJudgment],
    *,
    min_confidence: float = 0.0,
    min_judgments: int = 1,
) -> list[Decision]:
    """Return one decision per judged pair of a regular item, in (item, response, response) order.

    A pair is decided only if the consensus has a winner, at least `min_judgments` judgments agree
    with that winner, and its confidence (rounded as stored) is at least `min_confidence`. With
    `min_judgments` 2 a 1–1 split is never decided, whatever weights the method gives the two
    annotators: one judgment agrees with either side.
    """
    by_key: dict[Hashable, list[agg.PairwiseJudgment]] = defaultdict(list)
    for p in regular:
        by_key[p.item_id].append(p)
    out = []
    for c in consensus.items:
        group = by_key.get(c.item_id)
        if group is None:  # a gold item: it weighed annotators, it is not a comparison
            continue
        confidence = round(min(max(float(c.confidence), 0.0), 1.0), DIGITS)
        winner = c.winner_id
        agreeing = [agg.judgment_margin(p) for p in group if winner is not None and p.winner_id == winner]
        margin = round(float(sum(agreeing) / len(agreeing)), DIGITS) if agreeing else 0.0
        if winner is None:
            outcome, reason = "tie", "tie"
        elif len(agreeing) < min_judgments:
            outcome, reason = "undecided", "too_few_judgments"
        elif confidence < min_confidence:
            outcome, reason = "undecided", "below_confidence"
        else:
            outcome, reason = "chosen", ""
        out.append(Decision(
            key=c.item_id, item_id=item_of(c.item_id), response_a_id=c.response_a_id, response_b_id=c.response_b_id,
            outcome=outcome, winner_id=winner, reason=reason, confidence=confidence, n_judgments=c.n_judgments,
            support=len(agreeing), margin=margin,
        ))
    out.sort(key=lambda d: (d.item_id, min(d.response_a_id, d.response_b_id), max(d.response_a_id, d.response_b_id)))
    return out


def snapshot_comparisons(
    consensus: agg.ConsensusResult,
    regular: Sequence[agg.PairwiseJudgment],
    *,
    include_ties: bool,
    min_confidence: float = 0.0,
    min_judgments: int = 1,
) -> list[ComparisonRow]:
    """Return one row per judged pair of a regular item, in (item, response, response) order.

    The margin of a decided pair is the mean margin (strength, rank gap or score difference) of
    the judgments that agree with the consensus winner. A tie (kept only with `include_ties`) and
    an undecided pair (always kept, so the dataset says what it held back) keep the item's
    response order with margin 0; no training export reads either.
    """
    model = {}
    for p in regular:
        model[p.response_a_id], model[p.response_b_id] = p.model_a or "", p.model_b or ""
    out = []
    for d in snapshot_decisions(consensus, regular, min_confidence=min_confidence, min_judgments=min_judgments):
        if d.outcome == "chosen":
            chosen = d.winner_id
            rejected = d.response_b_id if chosen == d.response_a_id else d.response_a_id
            margin = d.margin
        else:
            if d.outcome == "tie" and not include_ties:
                continue
            chosen, rejected, margin = d.response_a_id, d.response_b_id, 0.0
        out.append(ComparisonRow(
            item_id=d.item_id, chosen_id=chosen, rejected_id=rejected, chosen_model=model.get(chosen, ""),
            rejected_model=model.get(rejected, ""), outcome=d.outcome, margin=margin, confidence=d.confidence,
            n_judgments=d.n_judgments,
        ))
    return out


def held_back_counts(decisions: Sequence[Decision]) -> dict[str, int]:
    """Return how many pairs each reason kept from being a decided pair (every reason, 0 included)."""
    counts = dict.fromkeys(HELD_BACK_REASONS, 0)
    for d in decisions:
        if d.reason:
            counts[d.reason] += 1
    return counts


# --- flags ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlaggedItem:
    item_id: int
    flags: dict[str, int]  # holding flag -> annotators who raised it
    annotators: int  # distinct annotators who raised any holding flag


def snapshot_flagged(rows: Iterable[JudgmentRow], *, min_annotators: int) -> list[FlaggedItem]:
    """Return the regular items that at least `min_annotators` distinct annotators flagged unsafe,
    private data or broken (`answer["flags"]`), by item id."""
    by_item: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        if row.is_gold:
            continue
        for flag in (row.answer or {}).get("flags") or ():
            if flag in HOLDING_FLAGS:
                by_item[row.item_id][flag].add(row.annotator_id)
    out = []
    for item_id in sorted(by_item):
        flags = by_item[item_id]
        who = set().union(*flags.values())
        if len(who) >= min_annotators:
            out.append(FlaggedItem(item_id=item_id, flags={f: len(flags[f]) for f in HOLDING_FLAGS if f in flags},
                                   annotators=len(who)))
    return out


# --- one consensus for the dataset, the items page and the dashboard ---------------------------------


@dataclass(frozen=True)
class Consensus:
    judged: JudgedPairs
    regular: list[agg.PairwiseJudgment]
    result: agg.ConsensusResult
    decisions: list[Decision]


def snapshot_decide(
    rows: Sequence[JudgmentRow],
    *,
    kind: str,
    item_responses: Mapping[int, Sequence[int]],
    models: Mapping[int, str],
    method: str,
    params: Mapping[str, Any],
) -> Consensus:
    """Return the pairs, the consensus and each pair's decision, by the method and its parameters.

    The one path from judgments to decided / tie / undecided: a dataset build, the items page and
    the dashboard all call it, so they agree item by item when given the same judgments, method and
    parameters (thresholds included).
    """
    judged = snapshot_pairs(rows, kind=kind, item_responses=item_responses, models=models, params=params)
    regular = [p for p in judged.pairs if not p.is_gold]
    result = snapshot_consensus(judged.pairs, method=method, params=params) if regular else agg.ConsensusResult(
        method=method, items=[])
    decisions = snapshot_decisions(
        result, regular, min_confidence=params.get("min_confidence", 0.0), min_judgments=params.get("min_judgments", 1)
    )
    return Consensus(judged=judged, regular=regular, result=result, decisions=decisions)


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
                "undecided": sum(1 for c in comparisons if c.outcome == "undecided"),
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
