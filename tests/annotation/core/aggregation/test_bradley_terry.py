import math

import choix
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from annotation.core.aggregation import bradley_terry as bt
from annotation.core.aggregation import leaderboard, pair_table, to_elo


def battles(n=20_000, m=8, tie_rate=0.15, seed=0):
    rng = np.random.default_rng(seed)
    strength = np.linspace(-1.5, 1.5, m)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = expit(strength[a] - strength[b])
    o = np.where(rng.random(n) < tie_rate, 2, np.where(rng.random(n) < p, 0, 1))
    names = [f"model-{k}" for k in range(m)]
    return [names[k] for k in a], [names[k] for k in b], o, names


def test_pair_table_folds_orientation_and_both_bad():
    """(x beats y) and (y loses to x) land in the same cell; both-bad is a tie."""
    t = pair_table(["x", "y", "x", "y"], ["y", "x", "y", "x"], ["a", "b", "tie", "both_bad"])
    assert t.models == ["x", "y"]
    assert (t.wins_i.tolist(), t.ties.tolist(), t.wins_j.tolist()) == ([2.0], [2.0], [0.0])


def test_pair_table_rejects_bad_rows():
    with pytest.raises(ValueError, match="same model on both sides"):
        pair_table(["x"], ["x"], [0])
    with pytest.raises(ValueError, match="outcome: 'draw' is not a valid Outcome"):
        pair_table(["x"], ["y"], ["draw"])
    with pytest.raises(ValueError, match="model 'z' is in the judgments but not in `models`"):
        pair_table(["x"], ["z"], [0], models=["x", "y"])


def test_matches_choix_without_ties():
    """No ties: our maximum-likelihood strengths equal choix's ILSR fixed point (1e-6) and opt_pairwise (1e-4)."""
    a, b, o, names = battles(tie_rate=0.0)
    theta, _ = bt.fit(pair_table(a, b, o, models=names))
    index = {n: k for k, n in enumerate(names)}
    data = [
        (index[x], index[y]) if oc == 0 else (index[y], index[x])
        for x, y, oc in zip(a, b, o, strict=True)
    ]
    ilsr = choix.ilsr_pairwise(len(names), data, alpha=0.0, tol=1e-12, max_iter=10_000)
    np.testing.assert_allclose(theta, ilsr - ilsr.mean(), atol=1e-6)
    opt = choix.opt_pairwise(len(names), data, alpha=0.0, tol=1e-10)
    np.testing.assert_allclose(theta, opt - opt.mean(), atol=1e-4)


def _fastchat_loss(table):
    """FastChat's count-weighted logistic loss (ties = half a win), on the natural scale."""
    rows_a = np.concatenate([table.i, table.i, table.i])
    rows_b = np.concatenate([table.j, table.j, table.j])
    y = np.concatenate([np.ones(len(table.i)), np.full(len(table.i), 0.5), np.zeros(len(table.i))])
    w = np.concatenate([table.wins_i, table.ties, table.wins_j])

    def f(r):
        p = expit(r[rows_a] - r[rows_b])
        g = np.zeros_like(r)
        np.add.at(g, rows_a, -(y - p) * w)
        np.add.at(g, rows_b, (y - p) * w)
        return -((np.log(p) * y + np.log1p(-p) * (1 - y)) * w).sum(), g

    return f


def test_half_ties_match_direct_minimisation():
    """Ties as half a win: same optimum as L-BFGS on FastChat's loss run to full precision."""
    a, b, o, names = battles()
    table = pair_table(a, b, o)
    theta, nu = bt.fit(table)
    ref = minimize(
        _fastchat_loss(table),
        np.zeros(len(names)),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000},
    ).x
    assert nu is None
    np.testing.assert_allclose(theta, ref - ref.mean(), atol=1e-6)


def test_davidson_matches_direct_minimisation():
    a, b, o, names = battles(tie_rate=0.3)
    table = pair_table(a, b, o)
    theta, nu = bt.fit(table, ties="davidson")

    def nll(x):
        d = x[table.i] - x[table.j]
        v = math.exp(x[-1])
        den = np.log(np.exp(d / 2) + np.exp(-d / 2) + v)
        return -(
            table.wins_i * (d / 2 - den)
            + table.wins_j * (-d / 2 - den)
            + table.ties * (x[-1] - den)
        ).sum()

    ref = minimize(nll, np.zeros(len(names) + 1), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose(theta, ref[:-1] - ref[:-1].mean(), atol=1e-4)
    assert nu == pytest.approx(math.exp(ref[-1]), abs=1e-4)
    # Davidson's nu relates to the tie rate between equal models: P(tie) = nu / (2 + nu).
    assert 0.2 < nu / (2 + nu) < 0.5


def test_elo_scale_mean_and_anchor():
    theta = np.array([-1.0, 0.0, 1.0])
    elo = to_elo(theta, ["a", "b", "c"])
    np.testing.assert_allclose(elo, [1000 - 400 / math.log(10), 1000, 1000 + 400 / math.log(10)])
    anchored = to_elo(theta, ["a", "b", "c"], anchor=("a", 1114.0))
    assert anchored[0] == pytest.approx(1114.0) and anchored[2] - anchored[0] == pytest.approx(
        elo[2] - elo[0]
    )


def test_chord_bootstrap_equals_exact_newton_per_round():
    """The fixed-Hessian batched fit lands on each round's own maximum-likelihood fit."""
    a, b, o, names = battles(n=5_000)
    table = pair_table(a, b, o)
    counts = bt.poisson_counts(table, 20, np.random.default_rng(1))
    boot, ok = bt.bootstrap_fit(table, counts)
    assert ok.all()
    for r in range(20):
        one = bt.PairTable(table.models, table.i, table.j, counts[0][r], counts[1][r], counts[2][r])
        np.testing.assert_allclose(boot[r], bt.fit(one)[0], atol=1e-8)


def test_leaderboard_intervals_cover_and_ranks_use_overlap():
    a, b, o, names = battles(n=20_000)
    board = leaderboard(pair_table(a, b, o, models=names), rounds=200, seed=0)
    assert board.scores.mean() == pytest.approx(1000.0)
    assert np.all(board.lower < board.scores) and np.all(board.scores < board.upper)
    assert list(np.argsort(-board.scores)) == list(range(len(names)))[::-1]  # strengths rise with k
    assert board.ranks.tolist() == bt.ci_ranks(board.lower, board.upper).tolist()
    assert board.rows()[0]["model"] == names[-1] and board.rows()[0]["rank"] == 1


def test_ci_ranks():
    lower, upper = np.array([10.0, 8.0, 1.0, 0.5]), np.array([12.0, 11.0, 9.0, 2.0])
    # Model 2 (upper 9) is below model 0 (lower 10); model 3 (upper 2) below models 0 and 1.
    assert bt.ci_ranks(lower, upper).tolist() == [1, 1, 2, 3]


def test_not_identifiable_without_prior():
    """A model that never lost has no finite strength: say so, and let a prior fix it."""
    with pytest.raises(ValueError, match="not identifiable.*pass prior > 0"):
        bt.fit(pair_table(["x", "x", "y"], ["y", "z", "z"], [0, 0, 1]))
    theta, _ = bt.fit(pair_table(["x", "x", "y"], ["y", "z", "z"], [0, 0, 1]), prior=0.1)
    assert theta[0] > theta[2] > theta[1]


def test_leaderboard_without_battles_rests_on_its_prior():
    board = leaderboard(pair_table([], [], [], models=["x", "y"]), rounds=20, prior=0.5)
    assert board.scores.tolist() == [1000.0, 1000.0] and board.failed_rounds == 0
    assert board.lower.tolist() == board.upper.tolist() == [1000.0, 1000.0]
    assert board.ranks.tolist() == [1, 1]
