"""Bradley–Terry leaderboards from pairwise outcomes, with fast bootstrap intervals.

Strengths are fitted on the natural scale (P(i beats j) = sigmoid(theta_i - theta_j)) and
reported on the Elo scale FastChat uses: elo = scale / ln(base) * theta + init, centred so
the mean is `init` (which is where FastChat's `compute_mle_elo` / `compute_bt` land: their
optimisers start at 0 and every gradient sums to 0), optionally shifted so that an anchor model
sits at a given rating (FastChat anchors mixtral-8x7b-instruct-v0.1 at 1114).

The whole data set reduces to a per-pair table (games, wins, ties), so a bootstrap round is a
redraw of a few thousand cell counts, and all rounds are fitted together: Newton steps on a
[rounds, models] array, warm-started at the full-data fit, with the full-data Hessian reused
(a chord method; it converges in a handful of steps because a round moves the Hessian by a
few per cent), and exact per-round Newton for any round that does not settle.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit

from .sampling import PoissonSampler
from .types import CLASS_A, CLASS_B, CLASS_TIE, Outcome, PairwiseJudgment

TIES = ("half", "davidson")


@dataclass(frozen=True)
class PairTable:
    """Sufficient statistics: for each unordered pair (i < j), wins of i, ties, wins of j."""

    models: list[Hashable]
    i: np.ndarray
    j: np.ndarray
    wins_i: np.ndarray
    ties: np.ndarray
    wins_j: np.ndarray

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def games(self) -> np.ndarray:
        return self.wins_i + self.ties + self.wins_j

    def games_per_model(self) -> np.ndarray:
        g = self.games
        return np.bincount(self.i, g, self.n_models) + np.bincount(self.j, g, self.n_models)


def _codes(values: Sequence[Hashable] | np.ndarray, index: dict[Hashable, int]) -> np.ndarray:
    # A list of names stays a list: turning a million strings into a numpy string array and
    # back costs more than coding them.
    if isinstance(values, np.ndarray):
        seq = values.tolist()
    else:
        seq = values if isinstance(values, list) else list(values)
    try:
        # A growing index (`_NewNames`) numbers unseen names as it meets them, in C.
        return np.fromiter(map(index.__getitem__, seq), np.intp, len(seq))
    except KeyError as e:
        raise ValueError(f"model {e.args[0]!r} is in the judgments but not in `models`") from None


class _NewNames(dict):
    """Model name -> index, numbering new names in order of first appearance."""

    def __missing__(self, name: Hashable) -> int:
        self[name] = k = len(self)
        return k


_OUTCOME_CODE = {
    Outcome.A: CLASS_A,
    Outcome.B: CLASS_B,
    Outcome.TIE: CLASS_TIE,
    Outcome.BOTH_BAD: CLASS_TIE,
}


def pair_table(
    model_a: Sequence[Hashable] | np.ndarray,
    model_b: Sequence[Hashable] | np.ndarray,
    outcome: Sequence[Outcome | str | int] | np.ndarray,
    *,
    models: Sequence[Hashable] | None = None,
    weights: np.ndarray | None = None,
) -> PairTable:
    """Return the pair table of battles (model_a, model_b, outcome).

    `outcome` holds `Outcome` values or integer codes 0 = model_a won, 1 = model_b won,
    2 = tie (both-bad counts as a tie, as in Chatbot Arena). Model columns hold names, or
    integer indices into `models`. `models` fixes the order of the leaderboard's models
    (default: order of first appearance, as FastChat's `pd.factorize`).
    """
    if not (len(model_a) == len(model_b) == len(outcome)):
        raise ValueError("model_a, model_b and outcome must have the same length")
    index: dict[Hashable, int] = (
        {m: k for k, m in enumerate(models)} if models is not None else _NewNames()
    )
    if models is not None and len(index) != len(models):
        raise ValueError("`models` names a model twice")
    # Look at the type without turning a list of a million names into a numpy string array.
    if isinstance(model_a, np.ndarray):
        ints = model_a.dtype.kind in "iu"
    else:
        ints = len(model_a) > 0 and all(isinstance(v, int | np.integer) for v in (model_a[0], model_b[0]))
    if ints and models is None:
        raise ValueError("integer model columns need `models` (the names they index)")
    if ints:
        a, b = np.asarray(model_a, dtype=np.intp), np.asarray(model_b, dtype=np.intp)
        if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(index)):
            raise ValueError(f"model indices must lie in 0..{len(index) - 1}")
    else:
        a = _codes(model_a, index)
        b = _codes(model_b, index)
    names = list(index)
    if isinstance(outcome, list) and outcome and type(outcome[0]) is int:
        o = np.fromiter(outcome, np.intp, len(outcome))  # 2x faster than asarray on a list
    else:
        o = np.asarray(outcome)
    if o.dtype.kind not in "iu":
        try:
            o = np.fromiter((_OUTCOME_CODE[Outcome(v)] for v in o.tolist()), np.intp, len(o))
        except ValueError as e:
            raise ValueError(f"outcome: {e}; use one of {[x.value for x in Outcome]}") from None
    else:
        if len(o) and (o.min() < 0 or o.max() > 3):
            raise ValueError(
                "integer outcomes must be 0 (a won), 1 (b won), 2 (tie) or 3 (both bad)"
            )
        o = np.minimum(o, CLASS_TIE)
    if np.any(a == b):
        raise ValueError(
            f"{int(np.sum(a == b))} battles have the same model on both sides; drop them"
        )
    m = len(names)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # Fold each battle onto its unordered pair: cell 0 = lo won, 1 = tie, 2 = hi won.
    lo_won = np.where(a == lo, o == CLASS_A, o == CLASS_B)
    cell = np.where(o == CLASS_TIE, 1, np.where(lo_won, 0, 2))
    w = None if weights is None else np.asarray(weights, dtype=float)
    counts = np.bincount((lo * m + hi) * 3 + cell, weights=w, minlength=m * m * 3).reshape(m * m, 3)
    pair = np.flatnonzero(counts.sum(axis=1) > 0)
    return PairTable(
        models=names,
        i=pair // m,
        j=pair % m,
        wins_i=counts[pair, 0].astype(float),
        ties=counts[pair, 1].astype(float),
        wins_j=counts[pair, 2].astype(float),
    )


def pair_table_from_judgments(judgments: Sequence[PairwiseJudgment], **kwargs) -> PairTable:
    """Return the pair table of pairwise judgments that name both models."""
    kept = [
        j
        for j in judgments
        if j.model_a is not None and j.model_b is not None and j.model_a != j.model_b
    ]
    return pair_table(
        [j.model_a for j in kept], [j.model_b for j in kept], [j.outcome for j in kept], **kwargs
    )


def check_identifiable(table: PairTable) -> None:
    """Raise ValueError unless the maximum-likelihood strengths exist (Ford's condition).

    Every split of the models into two groups needs a win (or tie) each way across it, i.e.
    the graph "i won or tied against j" is strongly connected.
    """
    m = table.n_models
    fwd = (table.wins_i + table.ties) > 0
    bwd = (table.wins_j + table.ties) > 0
    rows = np.concatenate([table.i[fwd], table.j[bwd]])
    cols = np.concatenate([table.j[fwd], table.i[bwd]])
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
    n, labels = connected_components(graph, directed=True, connection="strong")
    if n > 1:
        sizes = np.bincount(labels)
        small = np.flatnonzero(labels == sizes.argmin())[:5]
        raise ValueError(
            "Bradley–Terry strengths are not identifiable: the models split into "
            f"{n} groups that never beat each other both ways (e.g. {[table.models[k] for k in small]}); "
            "collect more battles across them or pass prior > 0"
        )


# --- per-pair log-likelihood derivatives, batched over rounds -------------------------------


def _derivs(
    ties: str, d: np.ndarray, eta: np.ndarray | None, w: np.ndarray, t: np.ndarray, lo: np.ndarray
):
    """Return (dl/dd, -d2l/dd2, dl/deta, -d2l/deta2, -d2l/dd deta) per pair and round."""
    n = w + t + lo
    if ties == "half":
        p = expit(d)
        return (w + 0.5 * t) - n * p, n * p * (1.0 - p), None, None, None
    # Davidson (1970): P(i) : P(tie) : P(j) = e^{d/2} : nu : e^{-d/2}, nu = e^eta.
    nu = np.exp(eta)[:, None]
    half = 0.5 * d
    sh, ch = np.sinh(half), np.cosh(half)
    den = 2.0 * ch + nu
    g_d = 0.5 * (w - lo) - n * sh / den
    h_dd = n * (0.5 * ch / den - (sh / den) ** 2)
    g_e = (t - n * nu / den).sum(axis=1)
    h_ee = (n * (nu / den - (nu / den) ** 2)).sum(axis=1)
    h_de = -n * sh * nu / den**2  # per pair; enters model i with +, model j with -
    return g_d, h_dd, g_e, h_ee, h_de


def _loglik(ties: str, d: np.ndarray, eta: np.ndarray | None, w, t, lo) -> np.ndarray:
    if ties == "half":
        return ((w + 0.5 * t) * -np.logaddexp(0, -d) + (lo + 0.5 * t) * -np.logaddexp(0, d)).sum(
            axis=1
        )
    nu = np.exp(eta)[:, None]
    log_den = np.log(2.0 * np.cosh(0.5 * d) + nu)
    return (0.5 * (w - lo) * d + t * np.log(nu) - (w + t + lo) * log_den).sum(axis=1)


@dataclass
class _Problem:
    ties: str
    i: np.ndarray
    j: np.ndarray
    n_models: int
    prior: float
    incidence: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        b = np.zeros((len(self.i), self.n_models))
        b[np.arange(len(self.i)), self.i] = 1.0
        b[np.arange(len(self.i)), self.j] = -1.0
        self.incidence = b

    @property
    def n_params(self) -> int:
        return self.n_models + (self.ties == "davidson")

    def gradient_hessian(self, x: np.ndarray, w, t, lo, hessian: bool = True):
        """Return gradient [R, p] and negated Hessian + gauge term [R, p, p] (or None)."""
        m = self.n_models
        theta = x[:, :m]
        eta = x[:, m] if self.ties == "davidson" else None
        d = theta[:, self.i] - theta[:, self.j]
        g_d, h_dd, g_e, h_ee, h_de = _derivs(self.ties, d, eta, w, t, lo)
        grad = np.empty_like(x)
        grad[:, :m] = g_d @ self.incidence - self.prior * theta
        if eta is not None:
            grad[:, m] = g_e
        if not hessian:
            return grad, None
        r, p = x.shape
        a = np.zeros((r, p, p))
        a[:, self.i, self.j] = -h_dd
        a[:, self.j, self.i] = -h_dd
        diag = np.arange(m)
        a[:, diag, diag] = h_dd @ np.abs(self.incidence) + self.prior
        # The strengths are defined up to a constant: adding 1 1^T on the strength block gives
        # the minimum-norm Newton step (gradients sum to zero, so the step does too).
        a[:, :m, :m] += 1.0
        if eta is not None:
            cross = h_de @ self.incidence
            a[:, :m, m] = cross
            a[:, m, :m] = cross
            a[:, m, m] = h_ee
        return grad, a


def _newton(problem: _Problem, x: np.ndarray, w, t, lo, *, tol: float, max_iter: int):
    """Damped Newton on a batch of rounds; return (x, converged mask, iterations)."""
    converged = np.zeros(len(x), dtype=bool)
    active = np.arange(len(x))
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        xa = x[active]
        grad, a = problem.gradient_hessian(xa, w[active], t[active], lo[active])
        try:
            step = np.linalg.solve(a, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("rpq,rq->rp", np.linalg.pinv(a), grad)
        # Halve steps that lower the likelihood (only far from the optimum does this happen).
        f0 = problem_loglik(problem, xa, w[active], t[active], lo[active])
        scale = np.ones(len(active))
        for _ in range(30):
            f1 = problem_loglik(
                problem, xa + scale[:, None] * step, w[active], t[active], lo[active]
            )
            bad = ~(f1 >= f0 - 1e-9 * np.abs(f0))
            if not bad.any():
                break
            scale[bad] *= 0.5
        x[active] = xa + scale[:, None] * step
        done = np.max(np.abs(step), axis=1) * scale < tol
        converged[active[done]] = True
        active = active[~done]
        if not len(active):
            break
    return x, converged, it


def problem_loglik(problem: _Problem, x: np.ndarray, w, t, lo) -> np.ndarray:
    m = problem.n_models
    theta = x[:, :m]
    d = theta[:, problem.i] - theta[:, problem.j]
    eta = x[:, m] if problem.ties == "davidson" else None
    return _loglik(problem.ties, d, eta, w, t, lo) - 0.5 * problem.prior * (theta**2).sum(axis=1)


def _chord(
    problem: _Problem, x0: np.ndarray, a_inv: np.ndarray, w, t, lo, *, tol: float, max_iter: int
):
    """Newton steps with one fixed Hessian for all rounds; return (x, converged mask)."""
    x = np.repeat(x0[None, :], len(w), axis=0)
    converged = np.zeros(len(w), dtype=bool)
    active = np.arange(len(w))
    if problem.ties == "half":
        # Specialised: per-pair sums fixed up front, products in place (this loop is the bootstrap).
        # The incidence matrix has two non-zeros a row, so the differences are a gather and the
        # gradient a sparse product: ~100x fewer operations than the dense matrix products.
        # Work on [pairs, rounds] arrays so each product reads contiguous rows.
        inc_sparse = csr_matrix(problem.incidence.T)  # [models, pairs]
        score_t = np.ascontiguousarray((w + 0.5 * t).T)
        games_t = np.ascontiguousarray((w + t + lo).T)
    for _ in range(max_iter):
        if problem.ties == "half":
            xa = np.ascontiguousarray(x[active].T)  # [models, rounds]
            p = xa[problem.i]
            p -= xa[problem.j]
            expit(p, out=p)
            every = len(active) == games_t.shape[1]
            np.multiply(games_t if every else games_t[:, active], p, out=p)
            np.subtract(score_t if every else score_t[:, active], p, out=p)
            grad = (inc_sparse @ p).T
            if problem.prior:
                grad -= problem.prior * x[active]
        else:
            grad, _ = problem.gradient_hessian(
                x[active], w[active], t[active], lo[active], hessian=False
            )
        step = grad @ a_inv
        x[active] += step
        size = np.max(np.abs(step), axis=1)
        converged[active[size < tol]] = True
        # A round whose steps grow is leaving the region the fixed Hessian describes.
        active = active[(size >= tol) & np.isfinite(size) & (size < 1.0)]
        if not len(active):
            break
    return x, converged


def fit(
    table: PairTable,
    *,
    ties: str = "half",
    prior: float = 0.0,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> tuple[np.ndarray, float | None]:
    """Return (strengths on the natural scale, mean 0; Davidson tie parameter nu or None).

    `ties="half"` scores a tie as half a win for each side (Chatbot Arena); `"davidson"` fits
    Davidson's tie model. `prior` > 0 adds a Gaussian prior of that precision on the strengths
    (needed when a model never lost or never won).
    """
    if ties not in TIES:
        raise ValueError(f"ties={ties!r}: use one of {TIES}")
    if prior < 0:
        raise ValueError(f"prior={prior} must be >= 0")
    if table.n_models < 2:
        raise ValueError("a leaderboard needs battles between at least two models")
    if prior == 0:
        check_identifiable(table)
    if ties == "davidson" and (table.ties.sum() == 0 or (table.wins_i + table.wins_j).sum() == 0):
        raise ValueError(
            "the Davidson tie model needs both ties and decisive battles; use ties='half'"
        )
    problem = _Problem(ties, table.i, table.j, table.n_models, prior)
    x = np.zeros((1, problem.n_params))
    w, t, lo = (v[None, :] for v in (table.wins_i, table.ties, table.wins_j))
    x, converged, _ = _newton(problem, x, w, t, lo, tol=tol, max_iter=max_iter)
    if not converged[0]:
        raise RuntimeError(f"Bradley–Terry fit did not converge in {max_iter} Newton steps")
    theta = x[0, : table.n_models]
    theta = theta - theta.mean()
    nu = float(np.exp(x[0, table.n_models])) if ties == "davidson" else None
    return theta, nu


def to_elo(
    theta: np.ndarray,
    models: Sequence[Hashable],
    *,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    anchor: tuple[Hashable, float] | None = None,
) -> np.ndarray:
    """Return natural-scale strengths ([..., models]) on the Elo scale, mean `init` or anchored."""
    theta = np.asarray(theta)
    elo = scale / math.log(base) * (theta - theta.mean(axis=-1, keepdims=True)) + init
    if anchor is not None:
        model, rating = anchor
        if model in models:
            k = list(models).index(model)
            elo = elo + (rating - elo[..., [k]])
    return elo


def _cell_sampler(table: PairTable) -> PoissonSampler:
    return PoissonSampler(np.concatenate([table.wins_i, table.ties, table.wins_j]))


def _split_cells(draw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = draw.shape[1] // 3
    return draw[:, :pairs], draw[:, pairs : 2 * pairs], draw[:, 2 * pairs :]


def poisson_counts(table: PairTable, rounds: int, rng: np.random.Generator):
    """Return bootstrap cell counts (wins_i, ties, wins_j), each [rounds, pairs].

    A Poisson bootstrap: each cell is redrawn as Poisson(observed count). The Bradley–Terry
    fit depends only on the counts' proportions, so this matches resampling the judgments
    with replacement (a multinomial redraw) up to the spread of the total, 1/sqrt(N).
    """
    return _split_cells(_cell_sampler(table).draw(rng, rounds))


@dataclass(frozen=True)
class Leaderboard:
    """Models with Elo-scale scores, bootstrap intervals and CI-aware ranks.

    rank = 1 + the number of models whose lower bound is above this model's upper bound.
    """

    models: list[Hashable]
    scores: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    ranks: np.ndarray
    games: np.ndarray
    ties: str
    tie_parameter: float | None = None
    bootstrap: np.ndarray | None = None  # [rounds, models], Elo scale
    failed_rounds: int = 0

    def rows(self) -> list[dict]:
        """Return one dict per model, best first."""
        order = np.argsort(-self.scores, kind="stable")
        return [
            {
                "model": self.models[k],
                "rank": int(self.ranks[k]),
                "score": float(self.scores[k]),
                "lower": float(self.lower[k]),
                "upper": float(self.upper[k]),
                "games": int(self.games[k]),
            }
            for k in order
        ]


def ci_ranks(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Return 1 + the number of models whose lower bound is above each model's upper bound."""
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def bootstrap_fit(
    table: PairTable,
    counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    *,
    rng: np.random.Generator | None = None,
    rounds: int | None = None,
    ties: str = "half",
    prior: float = 0.0,
    start: tuple[np.ndarray, float | None] | None = None,
    tol: float = 1e-8,  # a step below 1e-8 in strength is ~2e-6 Elo; tighter only costs iterations
    chunk: int = 125,
    threads: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (strengths [rounds, models] centred, converged mask) for bootstrap cell counts.

    Give the counts, or `rng` and `rounds` to have each chunk of rounds draw its own Poisson
    counts in its worker thread (from a generator spawned per chunk: the same seed gives the
    same result whatever the number of threads).
    """
    theta0, nu0 = start if start is not None else fit(table, ties=ties, prior=prior)
    problem = _Problem(ties, table.i, table.j, table.n_models, prior)
    x0 = theta0 if nu0 is None else np.append(theta0, math.log(nu0))
    w0, t0, l0 = (v[None, :] for v in (table.wins_i, table.ties, table.wins_j))
    _, a0 = problem.gradient_hessian(x0[None, :], w0, t0, l0)
    a_inv = np.linalg.inv(a0[0])
    if counts is not None:
        w_all, t_all, l_all = counts
        rounds = len(w_all)
    elif rng is None or rounds is None:
        raise ValueError("bootstrap_fit needs the counts, or rng and rounds to draw them")
    starts = range(0, rounds, chunk)
    chunk_rngs = dict(zip(starts, rng.spawn(len(starts)), strict=True)) if counts is None else {}
    sampler = _cell_sampler(table) if counts is None else None
    out = np.empty((rounds, problem.n_params))
    ok = np.empty(rounds, dtype=bool)
    total0 = w0.sum() + t0.sum() + l0.sum()

    def run(s: int) -> None:
        sl = slice(s, s + chunk)
        if counts is None:
            w, t, lo = _split_cells(sampler.draw(chunk_rngs[s], min(chunk, rounds - s)))
        else:
            w, t, lo = w_all[sl], t_all[sl], l_all[sl]
        # The fixed Hessian is the full-data one. Scaling a round's counts to the full-data
        # total leaves its maximum-likelihood fit unchanged (not so with a prior).
        scale = total0 / np.maximum((w + t + lo).sum(axis=1), 1.0) if not prior else np.ones(len(w))
        ws, ts, ls = (v * scale[:, None] for v in (w, t, lo))
        x, conv = _chord(problem, x0, a_inv, ws, ts, ls, tol=tol, max_iter=30)
        if not conv.all():
            bad = np.flatnonzero(~conv)
            xb, cb, _ = _newton(
                problem,
                np.repeat(x0[None, :], len(bad), 0),
                w[bad],
                t[bad],
                lo[bad],
                tol=tol,
                max_iter=100,
            )
            x[bad], conv[bad] = xb, cb
        out[sl], ok[sl] = x, conv

    # numpy releases the GIL in its array loops, so chunks on two threads use two cores.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, starts))
    theta = out[:, : table.n_models]
    return theta - theta.mean(axis=1, keepdims=True), ok


def leaderboard(
    table: PairTable,
    *,
    ties: str = "half",
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    prior: float = 0.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    anchor: tuple[Hashable, float] | None = None,
    keep_bootstrap: bool = False,
) -> Leaderboard:
    """Return the Bradley–Terry leaderboard with `rounds` bootstrap rounds (0: no intervals)."""
    theta, nu = fit(table, ties=ties, prior=prior)
    elo = to_elo(theta, table.models, scale=scale, base=base, init=init, anchor=anchor)
    games = table.games_per_model()
    if rounds <= 0:
        return Leaderboard(
            table.models,
            elo,
            elo.copy(),
            elo.copy(),
            1 + (elo[None, :] > elo[:, None]).sum(1),
            games,
            ties,
            nu,
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    boot, ok = bootstrap_fit(table, rng=rng, rounds=rounds, ties=ties, prior=prior, start=(theta, nu))
    boot_elo = to_elo(boot[ok], table.models, scale=scale, base=base, init=init, anchor=anchor)
    alpha = (1 - confidence) / 2
    lower, upper = np.quantile(boot_elo, [alpha, 1 - alpha], axis=0)
    return Leaderboard(
        models=table.models,
        scores=elo,
        lower=lower,
        upper=upper,
        ranks=ci_ranks(lower, upper),
        games=games,
        ties=ties,
        tie_parameter=nu,
        bootstrap=boot_elo if keep_bootstrap else None,
        failed_rounds=int((~ok).sum()),
    )
