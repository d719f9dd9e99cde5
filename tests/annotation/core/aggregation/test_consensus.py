import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from annotation.core.aggregation import (
    Outcome,
    PairwiseJudgment,
    dawid_skene,
    encode,
    majority_vote,
    reliability_weighted,
)

# crowd-kit 1.4 calls pandas APIs that pandas 3 deprecates; its warnings are not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:.*:Warning:crowdkit"
)

CLASSES = (Outcome.A, Outcome.B, Outcome.TIE)


def j(item, ann, outcome, *, flip=False, gold=None, strength=None):
    a, b = (f"{item}-r2", f"{item}-r1") if flip else (f"{item}-r1", f"{item}-r2")
    swap = {Outcome.A: Outcome.B, Outcome.B: Outcome.A}
    if flip:  # the same answer, stored with the pair the other way round
        outcome = swap.get(outcome, outcome)
        gold = swap.get(gold, gold)
    return PairwiseJudgment(
        item_id=item,
        annotator_id=ann,
        response_a_id=a,
        response_b_id=b,
        outcome=outcome,
        strength=strength,
        shown_first_response_id=a,
        is_gold=gold is not None,
        gold_outcome=gold,
    )


def simulate(n_items=300, n_ann=12, overlap=3, spam=0.25, seed=0, gold_rate=0.0):
    """Return (judgments, truth class per item) from one-coin annotators, a share of them spammers."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(3, size=n_items, p=[0.45, 0.45, 0.10])
    acc = rng.uniform(0.7, 0.9, n_ann)
    spammers = rng.random(n_ann) < spam
    gold = rng.random(n_items) < gold_rate
    out = []
    for i in range(n_items):
        for a in rng.choice(n_ann, size=overlap, replace=False):
            if spammers[a]:
                c = rng.integers(3)
            else:
                c = (
                    truth[i]
                    if rng.random() < acc[a]
                    else rng.choice([k for k in range(3) if k != truth[i]])
                )
            out.append(
                j(
                    i,
                    f"ann{a}",
                    CLASSES[c],
                    flip=bool(rng.integers(2)),
                    gold=CLASSES[truth[i]] if gold[i] else None,
                )
            )
    return out, truth, spammers


def accuracy(result, truth):
    by = result.by_item()
    return np.mean([CLASSES.index(by[i].outcome) == truth[i] for i in range(len(truth))])


def test_majority_counts_votes_against_response_ids_not_positions():
    """The same answer stored in either orientation counts for the same response."""
    judgments = [j(1, "x", Outcome.A), j(1, "y", Outcome.A, flip=True), j(1, "z", Outcome.B)]
    c = majority_vote(judgments).items[0]
    assert c.winner_id == "1-r1"
    assert c.confidence == pytest.approx(2 / 3)
    assert c.n_judgments == 3


def test_majority_split_between_a_and_b_is_a_tie():
    """A 1–1 split states no preference."""
    c = majority_vote([j(1, "x", Outcome.A), j(1, "y", Outcome.B)]).items[0]
    assert c.outcome is Outcome.TIE and c.confidence == 0.5


def test_both_bad_is_a_tie_or_dropped():
    judgments = [j(1, "x", Outcome.BOTH_BAD), j(1, "y", Outcome.BOTH_BAD), j(1, "z", Outcome.A)]
    assert majority_vote(judgments).items[0].outcome is Outcome.TIE
    assert majority_vote(judgments, both_bad="drop").items[0].outcome is Outcome.A


def test_invalid_judgments_name_the_field():
    with pytest.raises(ValueError, match="outcome 'left' on item 1 is not one of"):
        PairwiseJudgment(
            item_id=1, annotator_id="x", response_a_id="a", response_b_id="b", outcome="left"
        )
    with pytest.raises(ValueError, match="item 1 is gold but has no gold_outcome"):
        PairwiseJudgment(
            item_id=1,
            annotator_id="x",
            response_a_id="a",
            response_b_id="b",
            outcome="a",
            is_gold=True,
        )
    with pytest.raises(ValueError, match="strength 5 on item 1 must be 1, 2, 3 or None"):
        PairwiseJudgment(
            item_id=1,
            annotator_id="x",
            response_a_id="a",
            response_b_id="b",
            outcome="a",
            strength=5,
        )
    with pytest.raises(ValueError, match="neither response_a_id nor response_b_id"):
        PairwiseJudgment(
            item_id=1,
            annotator_id="x",
            response_a_id="a",
            response_b_id="b",
            outcome="a",
            shown_first_response_id="c",
        )


def _crowdkit(judgments, use_gold):
    enc = encode(judgments)
    df = pd.DataFrame({"task": enc.item, "worker": enc.annotator, "label": enc.label})
    true_labels = None
    if use_gold:
        g = np.flatnonzero(enc.gold >= 0)
        true_labels = pd.Series(enc.gold[g], index=g)
    ds = DawidSkene(n_iter=100, tol=1e-5)
    probas = ds.fit_predict_proba(df, true_labels).sort_index()[[0, 1, 2]].to_numpy()
    return enc, ds, probas


@pytest.mark.parametrize("use_gold", [False, True])
def test_dawid_skene_matches_crowdkit(use_gold):
    """Same input, same posteriors, priors and confusion matrices as crowd-kit's DawidSkene (1e-6)."""
    judgments, _, _ = simulate(n_items=200, n_ann=10, overlap=3, seed=1, gold_rate=0.1)
    enc, ds, ck_probas = _crowdkit(judgments, use_gold)
    ours = dawid_skene(judgments, use_gold=use_gold)
    probas = np.array([c.probabilities for c in ours.items])
    assert ours.iterations == len(ds.loss_history_)
    np.testing.assert_allclose(probas, ck_probas, atol=1e-6)
    for k, a in enumerate(enc.annotator_ids):
        ck = ds.errors_.loc[k].reindex(index=[0, 1, 2], columns=[0, 1, 2]).fillna(0).to_numpy()
        np.testing.assert_allclose(np.array(ours.annotators[a].confusion), ck, atol=1e-6)


def test_dawid_skene_finds_spammers_and_beats_majority():
    judgments, truth, spammers = simulate(n_items=600, overlap=5, spam=0.3, seed=2)
    ds = dawid_skene(judgments)
    acc = {a: r.accuracy for a, r in ds.annotators.items()}
    spam_acc = [acc[f"ann{k}"] for k in np.flatnonzero(spammers)]
    good_acc = [acc[f"ann{k}"] for k in np.flatnonzero(~spammers)]
    assert max(spam_acc) < 0.45 < 0.65 < min(good_acc)
    assert accuracy(ds, truth) > accuracy(majority_vote(judgments), truth)


def test_reliability_weights_spammers_near_zero_and_beats_majority():
    """Spammers earn ~0 weight; weighted votes are right more often than plain majority."""
    judgments, truth, spammers = simulate(n_items=600, overlap=3, spam=0.25, seed=3)
    rw = reliability_weighted(judgments)
    weights = np.array([rw.annotators[f"ann{k}"].weight for k in range(len(spammers))])
    assert weights[spammers].max() < 0.35 < weights[~spammers].min()
    assert accuracy(rw, truth) > accuracy(majority_vote(judgments), truth) + 0.03


def test_reliability_seeded_by_gold():
    """With one judgment per item only gold can tell annotators apart: gold accuracy sets the weight."""
    judgments = [j(i, "good", Outcome.A, gold=Outcome.A) for i in range(10)]
    judgments += [
        j(100 + i, "bad", Outcome.B if i % 3 else Outcome.A, gold=Outcome.A) for i in range(9)
    ]
    judgments += [j(200, "good", Outcome.A), j(200, "bad", Outcome.B)]
    rw = reliability_weighted(judgments)
    assert rw.annotators["good"].gold_correct == 10 and rw.annotators["bad"].gold_total == 9
    assert rw.annotators["good"].weight > 1.5 > 0.3 > rw.annotators["bad"].weight
    c = rw.by_item()[200]
    assert c.winner_id == "200-r1" and c.confidence > 0.8
    assert rw.by_item()[0].confidence == 1.0  # gold items keep their gold answer
