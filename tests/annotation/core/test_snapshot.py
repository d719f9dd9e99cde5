"""The snapshot math's thresholds: what is a decided pair, what is held back and why, and flags.

Plain rows in, plain rows out: no database.
"""

import pytest

from annotation.core import aggregation as agg
from annotation.core.snapshot import (
    DEFAULT_METHOD,
    JudgmentRow,
    default_min_judgments,
    default_params,
    held_back_counts,
    snapshot_comparisons,
    snapshot_decide,
    snapshot_decisions,
    snapshot_flagged,
)

METHODS = ("majority", "dawid_skene", "reliability_weighted")
A, B = 101, 102  # the two responses of every item below


def _row(jid, item, annotator, preferred=None, *, outcome="preferred", gold=None, flags=(), strength=2):
    return JudgmentRow(
        judgment_id=jid, item_id=item, annotator_id=annotator, outcome=outcome,
        preferred_response_id=preferred, strength=strength if outcome == "preferred" else None,
        answer={"flags": list(flags)} if flags else {}, display_order=[A, B], is_gold=gold is not None, gold=gold,
    )


def _decide(rows, method, **overrides):
    items = {r.item_id for r in rows}
    return snapshot_decide(
        rows, kind="pairwise", item_responses={i: [A, B] for i in items}, models={A: "m-a", B: "m-b"},
        method=method, params={**default_params(method, overlap=2), "bootstrap_rounds": 0, **overrides},
    )


def _reliable_and_spammer():
    """Annotator 1 answers 20 gold checks right, annotator 2 gets them all wrong; then item 1 is split
    between them 1–1, and items 2–5 both prefer A (so agreement, too, says annotator 1 is the better)."""
    rows, jid = [], 0
    for g in range(100, 120):
        for annotator, answer in ((1, A), (2, B)):
            jid += 1
            rows.append(_row(jid, g, annotator, answer, gold={"outcome": "preferred", "preferred_response_id": A}))
    rows += [_row(1000, 1, 1, A), _row(1001, 1, 2, B)]
    for item in range(2, 6):
        rows += [_row(1000 + 2 * item, item, 1, A), _row(1001 + 2 * item, item, 2, A)]
    return rows


@pytest.mark.parametrize("method", METHODS)
def test_a_one_one_split_is_never_a_decided_pair(method):
    """Two annotators split 1–1: under every method, at the defaults, the pair is not decided, even
    where the method trusts one annotator far more (gold answered right against all wrong)."""
    consensus = _decide(_reliable_and_spammer(), method)
    split = next(d for d in consensus.decisions if d.item_id == 1)
    assert split.outcome in ("tie", "undecided")
    assert split.support <= 1
    rows = snapshot_comparisons(consensus.result, consensus.regular, include_ties=True,
                                min_confidence=0.6, min_judgments=2)
    row = next(r for r in rows if r.item_id == 1)
    assert row.outcome != "chosen" and row.margin == 0.0
    # The agreeing items are decided pairs, A chosen.
    assert [(d.item_id, d.outcome, d.winner_id) for d in consensus.decisions if d.item_id != 1] == [
        (i, "chosen", A) for i in range(2, 6)
    ]


def test_reliability_weighting_would_decide_the_split_without_the_threshold():
    """The split is decided by the weighted vote itself (confidence well above 0.6): only the
    min_judgments threshold keeps it from being exported as a preference."""
    consensus = _decide(_reliable_and_spammer(), "reliability_weighted", min_judgments=1)
    split = next(d for d in consensus.decisions if d.item_id == 1)
    assert (split.outcome, split.winner_id) == ("chosen", A) and split.confidence > 0.8
    held = _decide(_reliable_and_spammer(), "reliability_weighted")
    assert next(d for d in held.decisions if d.item_id == 1).reason == "too_few_judgments"


def test_dawid_skene_split_of_two_strangers_is_held_back():
    """Two annotators with nothing else to go on split 1–1 (the issue's case): Dawid–Skene leans one way
    at about 0.5; at the defaults it is undecided or a tie, never chosen."""
    rows = [_row(1, 1, 1, A), _row(2, 1, 2, B)]
    d = _decide(rows, "dawid_skene").decisions[0]
    assert d.outcome != "chosen"


def _one(confidence, n_for_winner, n_total, outcome=agg.Outcome.A):
    judgments = [
        agg.PairwiseJudgment(item_id=1, annotator_id=k, response_a_id=A, response_b_id=B,
                             outcome=outcome if k < n_for_winner else agg.Outcome.TIE, strength=2)
        for k in range(n_total)
    ]
    item = agg.ItemConsensus(item_id=1, response_a_id=A, response_b_id=B, outcome=outcome, confidence=confidence,
                             probabilities=(confidence, 1 - confidence, 0.0), n_judgments=n_total)
    return agg.ConsensusResult(method="test", items=[item]), judgments


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.6, "chosen"), (0.6000004, "chosen"), (0.5999996, "chosen"), (0.599999, "undecided"), (0.59, "undecided"),
     (1.0, "chosen")],
)
def test_min_confidence_edge(confidence, expected):
    """At the threshold is decided, below it is not; confidence is compared as stored (6 digits)."""
    consensus, judgments = _one(confidence, 2, 2)
    [d] = snapshot_decisions(consensus, judgments, min_confidence=0.6, min_judgments=2)
    assert d.outcome == expected
    assert d.reason == ("" if expected == "chosen" else "below_confidence")


@pytest.mark.parametrize(("agreeing", "total", "min_judgments", "expected"), [
    (1, 1, 1, "chosen"), (1, 1, 2, "undecided"), (2, 2, 2, "chosen"), (1, 3, 2, "undecided"),
    (2, 3, 2, "chosen"), (2, 3, 3, "undecided"), (3, 3, 3, "chosen"),
])
def test_min_judgments_counts_the_judgments_that_agree(agreeing, total, min_judgments, expected):
    """min_judgments counts the judgments agreeing with the winner, not all of them."""
    consensus, judgments = _one(0.9, agreeing, total)
    [d] = snapshot_decisions(consensus, judgments, min_confidence=0.6, min_judgments=min_judgments)
    assert (d.outcome, d.support) == (expected, agreeing)
    assert d.reason == ("" if expected == "chosen" else "too_few_judgments")


def test_too_few_judgments_is_reported_before_low_confidence():
    consensus, judgments = _one(0.3, 1, 1)
    [d] = snapshot_decisions(consensus, judgments, min_confidence=0.6, min_judgments=2)
    assert d.reason == "too_few_judgments"


def test_undecided_rows_keep_item_order_with_margin_zero_and_ties_follow_include_ties():
    """An undecided pair is always a row (outcome undecided, the item's order, margin 0); a tie is a row
    only with include_ties; a decided pair keeps its winner and margin."""
    rows = [_row(1, 1, 1, B),  # one judgment for B: undecided (min_judgments 2)
            _row(3, 2, 1, outcome="tie"), _row(4, 2, 2, outcome="tie"),  # a tie
            _row(5, 3, 1, B), _row(6, 3, 2, B)]  # decided: B
    consensus = _decide(rows, "majority")
    assert held_back_counts(consensus.decisions) == {"tie": 1, "too_few_judgments": 1, "below_confidence": 0}
    for include_ties in (True, False):
        out = snapshot_comparisons(consensus.result, consensus.regular, include_ties=include_ties,
                                   min_confidence=0.6, min_judgments=2)
        by_item = {r.item_id: r for r in out}
        assert (by_item[3].outcome, by_item[3].chosen_id, by_item[3].margin) == ("chosen", B, 2.0)
        assert (by_item[1].outcome, by_item[1].chosen_id, by_item[1].rejected_id, by_item[1].margin) == (
            "undecided", A, B, 0.0)
        assert (2 in by_item) is include_ties


def test_held_back_counts_name_every_reason():
    consensus = _decide([_row(1, 1, 1, A), _row(2, 2, 1, A), _row(3, 2, 2, A)], "majority")
    assert held_back_counts(consensus.decisions) == {"tie": 0, "too_few_judgments": 1, "below_confidence": 0}


def test_defaults():
    """Reliability weighting by default; min_judgments 2 (1 where the campaign asks one judgment per item)."""
    assert DEFAULT_METHOD == "reliability_weighted"
    assert [default_min_judgments(o) for o in (None, 1, 2, 3, 5)] == [2, 1, 2, 2, 2]
    params = default_params(overlap=3)
    assert (params["min_confidence"], params["min_judgments"], params["flag_min_annotators"],
            params["keep_flagged"]) == (0.6, 2, 1, False)


def test_flagged_items_count_distinct_annotators_and_holding_flags_only():
    rows = [
        _row(1, 1, 1, A, flags=["unsafe"]), _row(2, 1, 2, A, flags=["unsafe", "private_data"]),
        _row(3, 2, 1, A, flags=["broken"]),
        _row(4, 3, 1, A, flags=["cant_judge"]),  # says something about the annotator, not the item
        _row(5, 4, 1, A, flags=["unsafe"], gold={"outcome": "preferred", "preferred_response_id": A}),
    ]
    one = snapshot_flagged(rows, min_annotators=1)
    assert [(f.item_id, f.flags, f.annotators) for f in one] == [
        (1, {"unsafe": 2, "private_data": 1}, 2), (2, {"broken": 1}, 1),
    ]
    assert [f.item_id for f in snapshot_flagged(rows, min_annotators=2)] == [1]
    assert snapshot_flagged(rows, min_annotators=3) == []
