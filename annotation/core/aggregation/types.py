"""Plain data types for aggregation: judgments in, consensus out. No Django here."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Outcome(StrEnum):
    """A pairwise answer, stated against response ids (A = `response_a_id` preferred)."""

    A = "a"
    B = "b"
    TIE = "tie"
    BOTH_BAD = "both_bad"


# Consensus classes. BOTH_BAD is folded into TIE for preference consensus (neither response is
# preferred); callers who want both-bad answers out entirely pass `both_bad="drop"`.
CLASS_A, CLASS_B, CLASS_TIE = 0, 1, 2
N_CLASSES = 3
CLASS_OUTCOMES = (Outcome.A, Outcome.B, Outcome.TIE)


@dataclass(frozen=True, slots=True)
class PairwiseJudgment:
    """One annotator's answer on one pair of responses.

    `outcome` is relative to (`response_a_id`, `response_b_id`), never to screen positions;
    `shown_first_response_id` records which of the two was displayed first (left).
    `margin` is set by the ranking / rating expansions; for a plain pairwise answer the margin
    is the strength (see `judgment_margin`).
    """

    item_id: Hashable
    annotator_id: Hashable
    response_a_id: Hashable
    response_b_id: Hashable
    outcome: Outcome
    strength: int | None = None
    shown_first_response_id: Hashable | None = None
    model_a: str | None = None
    model_b: str | None = None
    is_gold: bool = False
    gold_outcome: Outcome | None = None
    margin: float | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        except ValueError:
            raise ValueError(
                f"outcome {self.outcome!r} on item {self.item_id!r} is not one of "
                f"{[o.value for o in Outcome]}; store the answer against response ids"
            ) from None
        if self.response_a_id == self.response_b_id:
            raise ValueError(
                f"response_a_id and response_b_id are both {self.response_a_id!r} on item "
                f"{self.item_id!r}; a pair needs two different responses"
            )
        if self.strength is not None and self.strength not in (1, 2, 3):
            raise ValueError(
                f"strength {self.strength!r} on item {self.item_id!r} must be 1, 2, 3 or None"
            )
        if self.shown_first_response_id is not None and self.shown_first_response_id not in (
            self.response_a_id,
            self.response_b_id,
        ):
            raise ValueError(
                f"shown_first_response_id {self.shown_first_response_id!r} on item "
                f"{self.item_id!r} is neither response_a_id nor response_b_id"
            )
        if self.is_gold:
            if self.gold_outcome is None:
                raise ValueError(
                    f"item {self.item_id!r} is gold but has no gold_outcome; set the gold answer "
                    "or is_gold=False"
                )
            object.__setattr__(self, "gold_outcome", Outcome(self.gold_outcome))

    @property
    def winner_id(self) -> Hashable | None:
        """Return the preferred response id, or None for a tie / both bad."""
        return _winner(self.outcome, self.response_a_id, self.response_b_id)


def _winner(outcome: Outcome, a: Hashable, b: Hashable) -> Hashable | None:
    return a if outcome is Outcome.A else b if outcome is Outcome.B else None


def judgment_margin(judgment: PairwiseJudgment) -> float:
    """Return the preference margin: 0 for a tie, else the explicit margin, else the strength (default 1)."""
    if judgment.outcome in (Outcome.TIE, Outcome.BOTH_BAD):
        return 0.0
    if judgment.margin is not None:
        return float(judgment.margin)
    return float(judgment.strength) if judgment.strength is not None else 1.0


@dataclass(frozen=True, slots=True)
class ItemConsensus:
    """The aggregated answer for one item, relative to (`response_a_id`, `response_b_id`)."""

    item_id: Hashable
    response_a_id: Hashable
    response_b_id: Hashable
    outcome: Outcome
    confidence: float
    probabilities: tuple[float, float, float]  # P(A), P(B), P(tie)
    n_judgments: int

    @property
    def winner_id(self) -> Hashable | None:
        """Return the preferred response id, or None for a tie / both bad."""
        return _winner(self.outcome, self.response_a_id, self.response_b_id)


@dataclass(frozen=True, slots=True)
class AnnotatorReliability:
    """How much one annotator is trusted: estimated accuracy and the vote weight it earned."""

    annotator_id: Hashable
    accuracy: float
    weight: float
    n_judgments: int
    gold_correct: int = 0
    gold_total: int = 0
    confusion: tuple[tuple[float, ...], ...] | None = None  # Dawid–Skene: P(answer | truth)


@dataclass(frozen=True)
class ConsensusResult:
    """Consensus for every item plus, where the method has it, per-annotator reliability."""

    method: str
    items: list[ItemConsensus]
    annotators: dict[Hashable, AnnotatorReliability] = field(default_factory=dict)
    iterations: int = 0

    def by_item(self) -> dict[Hashable, ItemConsensus]:
        return {c.item_id: c for c in self.items}


@dataclass(frozen=True)
class EncodedJudgments:
    """Judgments as integer arrays, each item's pair in one canonical orientation.

    The canonical pair of an item is (smaller response id, larger response id); `label` is
    CLASS_A / CLASS_B / CLASS_TIE in that orientation.
    """

    item_ids: list[Hashable]
    annotator_ids: list[Hashable]
    pairs: list[tuple[Hashable, Hashable]]
    item: np.ndarray  # [n] index into item_ids
    annotator: np.ndarray  # [n] index into annotator_ids
    label: np.ndarray  # [n] class in the item's canonical orientation
    gold: np.ndarray  # [n_items] gold class or -1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_annotators(self) -> int:
        return len(self.annotator_ids)


def _class_of(outcome: Outcome, flipped: bool) -> int:
    if outcome in (Outcome.TIE, Outcome.BOTH_BAD):
        return CLASS_TIE
    a_won = outcome is Outcome.A
    return CLASS_A if a_won != flipped else CLASS_B


def encode(judgments: Sequence[PairwiseJudgment], *, both_bad: str = "tie") -> EncodedJudgments:
    """Return `judgments` as arrays; `both_bad="tie"` folds both-bad into tie, `"drop"` leaves it out."""
    if both_bad not in ("tie", "drop"):
        raise ValueError(f"both_bad={both_bad!r}: use 'tie' or 'drop'")
    item_index: dict[Hashable, int] = {}
    annotator_index: dict[Hashable, int] = {}
    pairs: list[tuple[Hashable, Hashable]] = []
    gold: list[int] = []
    items, annotators, labels = [], [], []
    for j in judgments:
        if both_bad == "drop" and j.outcome is Outcome.BOTH_BAD:
            continue
        pair = tuple(sorted((j.response_a_id, j.response_b_id)))
        i = item_index.get(j.item_id)
        if i is None:
            i = item_index[j.item_id] = len(pairs)
            pairs.append(pair)
            gold.append(-1)
        elif pairs[i] != pair:
            raise ValueError(
                f"item {j.item_id!r} has judgments on pairs {pairs[i]} and {pair}; expand K-wise "
                "items into pairs with their own item ids first"
            )
        flipped = j.response_a_id != pair[0]
        if j.is_gold and j.gold_outcome is not None:
            g = _class_of(j.gold_outcome, flipped)
            if gold[i] not in (-1, g):
                raise ValueError(f"item {j.item_id!r} has two different gold outcomes")
            gold[i] = g
        a = annotator_index.setdefault(j.annotator_id, len(annotator_index))
        items.append(i)
        annotators.append(a)
        labels.append(_class_of(j.outcome, flipped))
    return EncodedJudgments(
        item_ids=list(item_index),
        annotator_ids=list(annotator_index),
        pairs=pairs,
        item=np.asarray(items, dtype=np.intp),
        annotator=np.asarray(annotators, dtype=np.intp),
        label=np.asarray(labels, dtype=np.intp),
        gold=np.asarray(gold, dtype=np.intp),
    )
