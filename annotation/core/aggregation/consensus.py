"""Consensus per item: majority vote, Dawid–Skene (EM) and reliability-weighted voting.

All three work on `EncodedJudgments` (items in a canonical orientation, classes A / B / tie)
and report outcomes back against each item's response ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix

from .types import (
    CLASS_OUTCOMES,
    CLASS_TIE,
    N_CLASSES,
    AnnotatorReliability,
    ConsensusResult,
    EncodedJudgments,
    ItemConsensus,
    PairwiseJudgment,
    encode,
)

_EPS = 1e-10  # the same floor crowd-kit's DawidSkene puts under probabilities


def _vote_counts(
    enc: EncodedJudgments, weights: np.ndarray | None = None, cell: np.ndarray | None = None
) -> np.ndarray:
    """Return (weighted) votes per item and class; `cell` is item * N_CLASSES + label, if at hand."""
    w = None if weights is None else weights[enc.annotator]
    if cell is None:
        cell = enc.item * N_CLASSES + enc.label
    flat = np.bincount(cell, weights=w, minlength=enc.n_items * N_CLASSES)
    return flat.reshape(enc.n_items, N_CLASSES)


def _decide(probas: np.ndarray) -> np.ndarray:
    """Return argmax classes; an exact A/B draw at the top is a tie (no preference can be stated)."""
    top = probas.max(axis=1, keepdims=True)
    at_top = np.isclose(probas, top, rtol=0, atol=1e-12)
    decided = probas.argmax(axis=1)
    decided[at_top[:, 0] & at_top[:, 1]] = CLASS_TIE
    return decided


def _items(enc: EncodedJudgments, probas: np.ndarray, decided: np.ndarray) -> list[ItemConsensus]:
    n = np.bincount(enc.item, minlength=enc.n_items).tolist()
    # A forced tie (A and B drawn at the top) reports the drawn share.
    confidence = np.where(
        decided == CLASS_TIE, np.maximum(probas[:, CLASS_TIE], probas.max(axis=1)), probas[np.arange(len(decided)), decided]
    ).tolist()
    outcomes = [CLASS_OUTCOMES[c] for c in decided.tolist()]
    p_a, p_b, p_tie = probas.T.tolist()
    return [
        ItemConsensus(
            item_id=item_id, response_a_id=pair[0], response_b_id=pair[1], outcome=outcome,
            confidence=conf, probabilities=(pa, pb, pt), n_judgments=k,
        )
        for item_id, pair, outcome, conf, pa, pb, pt, k in zip(
            enc.item_ids, enc.pairs, outcomes, confidence, p_a, p_b, p_tie, n, strict=True
        )
    ]


def _as_encoded(
    judgments: Sequence[PairwiseJudgment] | EncodedJudgments, both_bad: str
) -> EncodedJudgments:
    if isinstance(judgments, EncodedJudgments):
        return judgments
    return encode(judgments, both_bad=both_bad)


def _gold_stats(enc: EncodedJudgments) -> tuple[np.ndarray, np.ndarray]:
    gold = enc.gold[enc.item]
    on_gold = gold >= 0
    correct = np.bincount(
        enc.annotator[on_gold],
        weights=(enc.label[on_gold] == gold[on_gold]).astype(float),
        minlength=enc.n_annotators,
    )
    total = np.bincount(enc.annotator[on_gold], minlength=enc.n_annotators)
    return correct, total


def majority_vote(
    judgments: Sequence[PairwiseJudgment] | EncodedJudgments, *, both_bad: str = "tie"
) -> ConsensusResult:
    """Return the plurality answer per item; confidence is its vote share. Gold is not used."""
    enc = _as_encoded(judgments, both_bad)
    counts = _vote_counts(enc)
    probas = counts / counts.sum(axis=1, keepdims=True)
    decided = _decide(probas)
    agree = (enc.label == decided[enc.item]).astype(float)
    n = np.bincount(enc.annotator, minlength=enc.n_annotators)
    acc = np.bincount(enc.annotator, weights=agree, minlength=enc.n_annotators) / np.maximum(n, 1)
    annotators = {
        a: AnnotatorReliability(
            annotator_id=a, accuracy=float(acc[k]), weight=1.0, n_judgments=int(n[k])
        )
        for k, a in enumerate(enc.annotator_ids)
    }
    return ConsensusResult(
        method="majority", items=_items(enc, probas, decided), annotators=annotators
    )


def _answer_matrix(enc: EncodedJudgments) -> csr_matrix:
    """Return the sparse item x (annotator, answer) matrix: how often each annotator gave each answer on each item.

    Dawid–Skene's steps are then products with it (one pass over the judgments in compiled
    code, no per-judgment temporaries): votes per item of each annotator's log-likelihoods, and
    per (annotator, answer) sums of item posteriors.
    """
    answer = enc.annotator * N_CLASSES + enc.label
    return csr_matrix(
        (np.ones(len(answer)), (enc.item, answer)), shape=(enc.n_items, enc.n_annotators * N_CLASSES)
    )


def _ds_m_step(answers: csr_matrix, answers_t: csr_matrix, probas: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Return confusion matrices errors[annotator, answer, truth] = P(answer | truth).

    `answers_t` is `answers` transposed; `given[annotator, label]` says which answers an
    annotator ever gave.
    """
    errors = np.asarray(answers_t @ probas).reshape(-1, N_CLASSES, N_CLASSES)
    # Floor only the answers an annotator actually gave, as crowd-kit does; the others stay 0.
    errors = np.where(given[:, :, None], np.maximum(errors, _EPS), 0.0)
    return errors / errors.sum(axis=1, keepdims=True)


def _ds_e_step(answers: csr_matrix, priors: np.ndarray, errors: np.ndarray) -> np.ndarray:
    log_e = np.log2(np.where(errors > 0, errors, 1.0)).reshape(-1, N_CLASSES)
    ll = np.asarray(answers @ log_e)
    ll += np.log2(np.maximum(priors, _EPS))
    ll -= ll.max(axis=1, keepdims=True)
    p = np.exp2(ll)
    return p / p.sum(axis=1, keepdims=True)


def _ds_elbo(
    answers: csr_matrix, per_item: np.ndarray, probas: np.ndarray, priors: np.ndarray, errors: np.ndarray
) -> float:
    # crowd-kit's evidence lower bound, prior counted once per judgment, per judgment; summed per
    # item (`per_item` judgments each) rather than per judgment, which is the same sum.
    log_e = np.log(np.where(errors > 0, errors, 1.0)).reshape(-1, N_CLASSES)
    joint = (probas * (np.asarray(answers @ log_e) + per_item[:, None] * np.log(np.maximum(priors, _EPS)))).sum()
    p = np.maximum(probas, _EPS)
    entropy = -(np.log(p) * p).sum()
    return float(joint + entropy) / per_item.sum()


def dawid_skene(
    judgments: Sequence[PairwiseJudgment] | EncodedJudgments,
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    use_gold: bool = True,
    both_bad: str = "tie",
) -> ConsensusResult:
    """Return Dawid–Skene consensus (classes A / B / tie) fitted by EM.

    Follows crowd-kit's `DawidSkene` step for step (majority-vote start, the 1e-10 floor, stop
    when the per-judgment evidence lower bound improves by less than `tol`), so the two agree
    on the same input; with `use_gold`, gold items are held at their gold answer during EM as
    crowd-kit's `true_labels` does. Reliability is the annotator's accuracy under the fitted
    class priors, and the weight its log-odds.
    """
    enc = _as_encoded(judgments, both_bad)
    if len(enc.label) == 0:
        return ConsensusResult(method="dawid_skene", items=[])
    gold_rows = np.flatnonzero(enc.gold >= 0) if use_gold else np.array([], dtype=np.intp)

    def clamp(p: np.ndarray) -> np.ndarray:
        if len(gold_rows):
            p[gold_rows] = 0.0
            p[gold_rows, enc.gold[gold_rows]] = 1.0
        return p

    answers = _answer_matrix(enc)
    answers_t = answers.T.tocsr()
    given = (np.diff(answers_t.indptr) > 0).reshape(-1, N_CLASSES)
    per_item = np.asarray(answers.sum(axis=1)).ravel()  # judgments per item
    counts = _vote_counts(enc)
    probas = clamp(counts / counts.sum(axis=1, keepdims=True))
    priors = probas.mean(axis=0)
    errors = _ds_m_step(answers, answers_t, probas, given)
    loss = -np.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        probas = clamp(_ds_e_step(answers, priors, errors))
        priors = probas.mean(axis=0)
        errors = _ds_m_step(answers, answers_t, probas, given)
        new_loss = _ds_elbo(answers, per_item, probas, priors, errors)
        if new_loss - loss < tol:
            break
        loss = new_loss
    probas = np.maximum(probas, _EPS)  # crowd-kit leaves its probas floored the same way
    decided = _decide(probas)
    correct, total = _gold_stats(enc)
    n = np.bincount(enc.annotator, minlength=enc.n_annotators)
    acc = np.einsum("c,acc->a", priors, errors)
    annotators = {
        a: AnnotatorReliability(
            annotator_id=a,
            accuracy=float(acc[k]),
            weight=float(_log_odds(acc[k])),
            n_judgments=int(n[k]),
            gold_correct=int(correct[k]),
            gold_total=int(total[k]),
            confusion=tuple(tuple(float(x) for x in row) for row in errors[k]),
        )
        for k, a in enumerate(enc.annotator_ids)
    }
    return ConsensusResult(
        method="dawid_skene",
        items=_items(enc, probas, decided),
        annotators=annotators,
        iterations=iterations,
    )


def _log_odds(accuracy: np.ndarray | float, n_classes: int = N_CLASSES) -> np.ndarray:
    """Return the optimal one-coin vote weight log((K-1) p / (1-p)), 0 at chance, floored at 0."""
    p = np.clip(accuracy, 1e-6, 1 - 1e-6)
    return np.maximum(np.log((n_classes - 1) * p / (1 - p)), 0.0)


def reliability_weighted(
    judgments: Sequence[PairwiseJudgment] | EncodedJudgments,
    *,
    prior_accuracy: float = 0.6,
    prior_strength: float = 4.0,
    max_iter: int = 50,
    tol: float = 1e-6,
    use_gold: bool = True,
    both_bad: str = "tie",
) -> ConsensusResult:
    """Return consensus by log-odds-weighted votes, weights learnt from gold and from agreement.

    Under the one-coin model (an annotator is right with probability p, otherwise answers one
    of the other classes at random) the Bayes-optimal vote weight is log((K-1) p / (1-p)) and
    the item posterior is the softmax of the weighted votes. Each annotator's p starts from
    gold accuracy (Beta prior `prior_accuracy`, `prior_strength` pseudo-answers) and is then
    re-estimated by EM (one-coin Dawid–Skene): gold answers count as known-right or
    known-wrong, other answers by the posterior probability that they are right; class priors
    (A / B / tie) are re-estimated the same way. Annotators at or below chance (spammers) get
    weight 0, so an item only spammers saw falls back on the class priors.
    """
    enc = _as_encoded(judgments, both_bad)
    if len(enc.label) == 0:
        return ConsensusResult(method="reliability_weighted", items=[])
    if not 1 / N_CLASSES < prior_accuracy < 1:
        raise ValueError(f"prior_accuracy={prior_accuracy} must be between 1/{N_CLASSES} and 1")
    gold_correct, gold_total = (
        _gold_stats(enc) if use_gold else (np.zeros(enc.n_annotators), np.zeros(enc.n_annotators))
    )
    a0, b0 = prior_accuracy * prior_strength, (1 - prior_accuracy) * prior_strength
    open_rows = enc.gold[enc.item] < 0 if use_gold else np.ones(len(enc.label), dtype=bool)
    n_open = np.bincount(enc.annotator[open_rows], minlength=enc.n_annotators)
    agree = np.zeros(enc.n_annotators)
    weights = np.zeros(enc.n_annotators)
    log_prior = np.zeros(N_CLASSES)
    cell = enc.item * N_CLASSES + enc.label  # each judgment's (item, class) in a flat item x class array
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
        p = (gold_correct + agree + a0) / (gold_total + (n_open if iterations > 1 else 0) + a0 + b0)
        new_weights = _log_odds(p)
        scores = _vote_counts(enc, new_weights, cell) + log_prior
        # E-step of the one-coin model: the posterior of each item given every vote.
        post = np.exp(scores - scores.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        hit = post.ravel()[cell] * open_rows
        # Class priors matter where the votes say little (an item seen only by spammers).
        log_prior = np.log(np.maximum(post.mean(axis=0), _EPS))
        agree = np.bincount(enc.annotator, weights=hit, minlength=enc.n_annotators)
        done = np.max(np.abs(new_weights - weights)) < tol
        weights = new_weights
        if done:
            break
    scores = _vote_counts(enc, weights, cell) + log_prior
    probas = np.exp(scores - scores.max(axis=1, keepdims=True))
    probas /= probas.sum(axis=1, keepdims=True)
    if use_gold:
        g = np.flatnonzero(enc.gold >= 0)
        probas[g] = 0.0
        probas[g, enc.gold[g]] = 1.0
    decided = _decide(probas)
    n = np.bincount(enc.annotator, minlength=enc.n_annotators)
    annotators = {
        a: AnnotatorReliability(
            annotator_id=a,
            accuracy=float(p[k]),
            weight=float(weights[k]),
            n_judgments=int(n[k]),
            gold_correct=int(gold_correct[k]),
            gold_total=int(gold_total[k]),
        )
        for k, a in enumerate(enc.annotator_ids)
    }
    return ConsensusResult(
        method="reliability_weighted",
        items=_items(enc, probas, decided),
        annotators=annotators,
        iterations=iterations,
    )
