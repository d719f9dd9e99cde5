"""Inter-annotator agreement: Krippendorff's alpha (via `krippendorff`), Cohen's and Fleiss' kappa."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import krippendorff
import numpy as np

from .types import CLASS_A, CLASS_B, N_CLASSES, PairwiseJudgment, encode, judgment_margin


def reliability_matrix(
    judgments: Sequence[PairwiseJudgment], *, level: str = "nominal", both_bad: str = "tie"
) -> tuple[np.ndarray, list[Hashable], list[Hashable]]:
    """Return (annotators x items matrix, annotator ids, item ids), NaN where not judged.

    Nominal values are the classes A / B / tie in each item's canonical orientation. Ordinal
    values are the signed preference -3..3 (B much better .. tie .. A much better), using the
    strength (or margin) so that "slightly" and "much" better are different but ordered.
    """
    if level not in ("nominal", "ordinal"):
        raise ValueError(f"level={level!r}: use 'nominal' or 'ordinal'")
    enc = encode(judgments, both_bad=both_bad)
    if level == "nominal":
        values = enc.label.astype(float)
    else:
        kept = [j for j in judgments if both_bad == "tie" or j.outcome != "both_bad"]
        mag = np.array([judgment_margin(j) for j in kept])
        sign = np.select([enc.label == CLASS_A, enc.label == CLASS_B], [1.0, -1.0], 0.0)
        values = sign * mag
    m = np.full((enc.n_annotators, enc.n_items), np.nan)
    cells = enc.annotator * enc.n_items + enc.item
    if len(np.unique(cells)) != len(cells):
        raise ValueError("an annotator judged the same item twice; keep only the latest judgment")
    m[enc.annotator, enc.item] = values
    return m, enc.annotator_ids, enc.item_ids


def krippendorff_alpha(
    judgments: Sequence[PairwiseJudgment], *, level: str = "nominal", both_bad: str = "tie"
) -> float:
    """Return Krippendorff's alpha over all items judged by two or more annotators."""
    m, _, _ = reliability_matrix(judgments, level=level, both_bad=both_bad)
    m = m[:, (~np.isnan(m)).sum(axis=0) >= 2]
    if m.shape[1] == 0:
        raise ValueError("Krippendorff's alpha needs at least one item judged by two annotators")
    if len(np.unique(m[~np.isnan(m)])) < 2:
        return 1.0  # every answer identical: perfect agreement (the library would divide by 0)
    return float(krippendorff.alpha(reliability_data=m, level_of_measurement=level))


def cohen_kappa(labels_1: Sequence[Hashable], labels_2: Sequence[Hashable]) -> float:
    """Return Cohen's kappa of two annotators' labels on the same items (None = not labelled)."""
    if len(labels_1) != len(labels_2):
        raise ValueError(
            f"labels_1 has {len(labels_1)} items and labels_2 {len(labels_2)}; pass the same items"
        )
    pairs = [
        (a, b) for a, b in zip(labels_1, labels_2, strict=True) if a is not None and b is not None
    ]
    if not pairs:
        raise ValueError("Cohen's kappa needs at least one item labelled by both annotators")
    cats = sorted({x for p in pairs for x in p}, key=str)
    index = {c: k for k, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in pairs:
        table[index[a], index[b]] += 1
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2
    return 1.0 if p_e == 1 else float((p_o - p_e) / (1 - p_e))


def fleiss_kappa(table: np.ndarray) -> float:
    """Return Fleiss' kappa of an items x categories table of rating counts.

    Items may have different numbers of raters (each at least 2): per-item agreement is
    n_ij (n_ij - 1) / (n_i (n_i - 1)) and category shares pool all ratings, which is Fleiss
    (1971) exactly when every item has the same number of raters.
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2:
        raise ValueError("table must be 2-D: items x categories")
    n_i = t.sum(axis=1)
    if (n_i < 2).any():
        raise ValueError(
            f"item rows {np.flatnonzero(n_i < 2).tolist()} have fewer than 2 ratings; drop them"
        )
    p_i = ((t * (t - 1)).sum(axis=1)) / (n_i * (n_i - 1))
    p_j = t.sum(axis=0) / t.sum()
    p_bar, p_e = p_i.mean(), float((p_j**2).sum())
    return 1.0 if p_e == 1 else float((p_bar - p_e) / (1 - p_e))


def fleiss_kappa_judgments(
    judgments: Sequence[PairwiseJudgment], *, both_bad: str = "tie"
) -> float:
    """Return Fleiss' kappa of A / B / tie answers over items with two or more judgments."""
    enc = encode(judgments, both_bad=both_bad)
    t = np.zeros((enc.n_items, N_CLASSES))
    np.add.at(t, (enc.item, enc.label), 1)
    t = t[t.sum(axis=1) >= 2]
    if len(t) == 0:
        raise ValueError("Fleiss' kappa needs at least one item judged by two annotators")
    return fleiss_kappa(t)
