import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from annotation.core.aggregation import (
    Outcome,
    PairwiseJudgment,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_judgments,
    krippendorff_alpha,
    position_bias,
    ranking_to_pairs,
    ratings_to_pairs,
    reliability_matrix,
)
from annotation.core.aggregation.types import judgment_margin


def pj(item, ann, outcome, *, strength=None, flip=False, first="a"):
    a, b = ("r2", "r1") if flip else ("r1", "r2")
    return PairwiseJudgment(
        item_id=item,
        annotator_id=ann,
        response_a_id=f"{item}{a}",
        response_b_id=f"{item}{b}",
        outcome=outcome,
        strength=strength,
        shown_first_response_id=f"{item}{a if first == 'a' else b}",
    )


def test_alpha_calls_krippendorff_on_the_canonical_matrix():
    """Answers stored with the pair either way round are the same value for alpha."""
    js = [
        pj(1, "x", "a"),
        pj(1, "y", "b", flip=True),
        pj(2, "x", "tie"),
        pj(2, "y", "tie"),
        pj(3, "x", "b"),
        pj(3, "y", "a"),
        pj(4, "x", "a"),
        pj(4, "z", "a"),
    ]
    m, anns, items = reliability_matrix(js)
    assert anns == ["x", "y", "z"] and items == [1, 2, 3, 4]
    assert m[0, 0] == m[1, 0]  # item 1: same answer in both orientations
    assert krippendorff_alpha(js) == pytest.approx(
        krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
    )


def signed(item, ann, v):
    return pj(item, ann, "tie" if v == 0 else ("a" if v > 0 else "b"), strength=abs(v) or None)


def test_ordinal_alpha_uses_signed_strength():
    """Ordinal alpha counts 'A much better' vs 'A better' as a near miss, vs 'B much better' as far."""
    truth = [-3, -2, -1, 0, 1, 2, 3] * 3
    x = [signed(i, "x", v) for i, v in enumerate(truth)]
    near = [signed(i, "y", v - (v > 0) + (v < 0) if i % 2 else v) for i, v in enumerate(truth)]
    far = [signed(i, "y", -v) for i, v in enumerate(truth)]
    m, _, _ = reliability_matrix(x + near, level="ordinal")
    assert sorted(set(m[~np.isnan(m)])) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert krippendorff_alpha(x + near, level="ordinal") > 0.8
    assert krippendorff_alpha(x + far, level="ordinal") < 0
    # Nominally the near misses are plain disagreements only where the direction changes.
    assert krippendorff_alpha(x + near) > krippendorff_alpha(x + far)


def test_alpha_is_one_when_everyone_agrees():
    assert krippendorff_alpha([pj(1, "x", "a"), pj(1, "y", "a")]) == 1.0


def test_cohen_kappa_matches_sklearn():
    rng = np.random.default_rng(0)
    y1 = rng.choice(["a", "b", "tie"], 200).tolist()
    y2 = [v if rng.random() < 0.7 else rng.choice(["a", "b", "tie"]) for v in y1]
    assert cohen_kappa(y1, y2) == pytest.approx(cohen_kappa_score(y1, y2), abs=1e-12)
    with pytest.raises(ValueError, match="labels_1 has 2 items and labels_2 1"):
        cohen_kappa(["a", "b"], ["a"])


def test_fleiss_kappa_textbook_example():
    """Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210."""
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_of_two_raters_is_scotts_pi():
    """With two raters per item Fleiss' kappa is Scott's pi (pooled marginals)."""
    y1 = ["a", "a", "b", "tie", "b", "a"]
    y2 = ["a", "b", "b", "tie", "a", "a"]
    js = [pj(i, "x", v) for i, v in enumerate(y1)] + [pj(i, "y", v) for i, v in enumerate(y2)]
    p_o = np.mean([u == v for u, v in zip(y1, y2, strict=True)])
    pooled = np.array([(y1 + y2).count(c) for c in ("a", "b", "tie")]) / 12
    assert fleiss_kappa_judgments(js) == pytest.approx(
        (p_o - (pooled**2).sum()) / (1 - (pooled**2).sum())
    )


def test_ranking_expands_groups_into_pairs_with_margins():
    pairs = ranking_to_pairs(
        item_id=7,
        annotator_id="x",
        ranking=[["r1"], ["r2", "r3"], ["r4"]],
        responses=["r4", "r3", "r2", "r1"],
        models={"r1": "m1", "r4": "m4"},
    )
    got = {(p.response_a_id, p.response_b_id): (p.outcome, p.margin) for p in pairs}
    assert len(pairs) == 6
    assert got[("r4", "r1")] == (Outcome.B, 2.0)  # r1 two groups above r4
    assert got[("r3", "r2")] == (Outcome.TIE, 0.0)
    assert got[("r4", "r3")] == (Outcome.B, 1.0)
    assert (
        pairs[2].item_id == (7, "r4", "r1")
        and pairs[2].model_a == "m4"
        and pairs[2].model_b == "m1"
    )
    assert (
        len(
            ranking_to_pairs(
                item_id=7, annotator_id="x", ranking=[["r1"], ["r2", "r3"]], include_ties=False
            )
        )
        == 2
    )
    with pytest.raises(ValueError, match="names response 'r1' twice"):
        ranking_to_pairs(item_id=7, annotator_id="x", ranking=[["r1"], ["r1"]])
    with pytest.raises(
        ValueError, match=r"must rank every response exactly once \(missing: \['r3'\]"
    ):
        ranking_to_pairs(
            item_id=7, annotator_id="x", ranking=[["r1"], ["r2"]], responses=["r1", "r2", "r3"]
        )


def test_ratings_expand_with_score_difference_margins():
    pairs = ratings_to_pairs(
        item_id=1, annotator_id="x", scores={"r1": 7, "r2": 4, "r3": 6.5}, tie_tolerance=0.5
    )
    got = {(p.response_a_id, p.response_b_id): (p.outcome, p.margin) for p in pairs}
    assert got == {
        ("r1", "r2"): (Outcome.A, 3.0),
        ("r1", "r3"): (Outcome.TIE, 0.0),
        ("r2", "r3"): (Outcome.B, 2.5),
    }
    assert [judgment_margin(p) for p in pairs] == [3.0, 0.0, 2.5]


def test_margin_of_a_pairwise_answer_is_its_strength():
    assert judgment_margin(pj(1, "x", "a", strength=3)) == 3.0
    assert judgment_margin(pj(1, "x", "a")) == 1.0
    assert judgment_margin(pj(1, "x", "both_bad", strength=2)) == 0.0


def test_position_bias_per_annotator_and_overall():
    """An annotator who always picks the left response is flagged; a fair one is not."""
    rng = np.random.default_rng(0)
    js = []
    for i in range(200):
        first = "a" if rng.random() < 0.5 else "b"
        js.append(pj(i, "lefty", "a" if first == "a" else "b", first=first))
        js.append(pj(i, "fair", "a" if rng.random() < 0.5 else "b", first=first))
    js.append(pj(999, "fair", "tie"))
    overall, per = position_bias(js)
    assert per["lefty"].rate == 1.0 and per["lefty"].p_value < 1e-50
    assert per["fair"].p_value > 0.01 and per["fair"].ties == 1 and per["fair"].decisive == 200
    assert per["fair"].ci_low < 0.5 < per["fair"].ci_high
    assert overall.decisive == 400 and 0.6 < overall.rate < 0.9
