"""Bradley–Terry leaderboard with 1,000 bootstrap rounds: ours against Chatbot Arena's method.

Data: 1,000,000 synthetic battles among 100 models (true strengths N(0, 100 Elo), pairs uniform,
15 % ties of which a third "both bad"), as string columns model_a / model_b / winner.

Measured in one process on the same data, from raw battles to scores and 95 % intervals:
  * FastChat  — `fastchat/serve/monitor/rating_systems.py` (`compute_bt`, `compute_bootstrap_bt`)
    re-implemented below as it is written: np.unique reduction to (model_a, model_b, outcome)
    rows with counts, count-weighted logistic loss (ties = half a win) fitted by scipy L-BFGS
    (maxiter 100, gtol 1e-6), bootstrap = multinomial redraw of the counts (seed 0), one L-BFGS
    fit per round in a process pool of 2 (this machine's cores).
  * noise floor — FastChat's bootstrap once more with seed 1 (not timed): how far two runs of
    the same method differ in interval width, Monte Carlo noise of 1,000 rounds.
  * choix     — `choix.ilsr_pairwise` (no ties: decisive battles only), timed on the full data and
    on 3 bootstrap rounds, extrapolated to 1,000 (it has no weighted/tied input).
  * ours      — `annotation.core.aggregation.leaderboard`: pair table, Newton full fit, Poisson
    redraw of the pair-table cells (inverse-CDF tables, `annotation.core.aggregation.sampling`), all rounds fitted together with the full-data Hessian.

    python bench/bradley_terry.py              # full: 1M battles, 100 models, 1,000 rounds
    python bench/bradley_terry.py --battles 100000 --rounds 200   # smoke
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.core.aggregation import leaderboard, pair_table  # noqa: E402

# --- FastChat, as in rating_systems.py -------------------------------------------------------


def get_matchups_models(df):
    n_rows = len(df)
    model_indices, models = pd.factorize(pd.concat([df["model_a"], df["model_b"]]))
    matchups = np.column_stack([model_indices[:n_rows], model_indices[n_rows:]])
    return matchups, models.to_list()


def preprocess_for_bt(df):
    n_rows = len(df)
    schedule = np.full((n_rows, 3), fill_value=1, dtype=np.int32)
    schedule[:, [0, 1]], models = get_matchups_models(df)
    schedule[df["winner"] == "model_a", 2] = 2
    schedule[df["winner"] == "model_b", 2] = 0
    matchups_outcomes, weights = np.unique(schedule, return_counts=True, axis=0)
    matchups = matchups_outcomes[:, [0, 1]]
    outcomes = matchups_outcomes[:, 2].astype(np.float64) / 2.0
    weights = weights.astype(np.float64)
    return matchups, outcomes, models, weights


def bt_loss_and_grad(ratings, matchups, outcomes, weights, alpha=1.0):
    matchup_ratings = ratings[matchups]
    logits = alpha * (matchup_ratings[:, 0] - matchup_ratings[:, 1])
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    matchups_grads = -alpha * (outcomes - probs) * weights
    model_grad = np.zeros_like(ratings)
    np.add.at(
        model_grad,
        matchups[:, [0, 1]],
        matchups_grads[:, None] * np.array([1.0, -1.0], dtype=np.float64),
    )
    return loss, model_grad


def fit_bt(matchups, outcomes, weights, n_models, alpha, tol=1e-6):
    initial_ratings = np.zeros(n_models, dtype=np.float64)
    result = minimize(
        fun=bt_loss_and_grad,
        x0=initial_ratings,
        args=(matchups, outcomes, weights, alpha),
        jac=True,
        method="L-BFGS-B",
        options={"disp": False, "maxiter": 100, "gtol": tol},
    )
    return result["x"]


def scale_and_offset(
    ratings,
    models,
    scale=400,
    init_rating=1000,
    baseline_model="mixtral-8x7b-instruct-v0.1",
    baseline_rating=1114,
):
    scaled_ratings = (ratings * scale) + init_rating
    if baseline_model in models:
        baseline_idx = models.index(baseline_model)
        scaled_ratings += baseline_rating - scaled_ratings[..., [baseline_idx]]
    return scaled_ratings


def compute_bt(df, base=10.0, scale=400.0, init_rating=1000, tol=1e-6):
    matchups, outcomes, models, weights = preprocess_for_bt(df)
    ratings = fit_bt(matchups, outcomes, weights, len(models), math.log(base), tol)
    scaled_ratings = scale_and_offset(ratings, models, scale, init_rating=init_rating)
    return pd.Series(scaled_ratings, index=models).sort_values(ascending=False)


def compute_bootstrap_bt(
    battles, num_round, base=10.0, scale=400.0, init_rating=1000.0, tol=1e-6, num_cpu=None, seed=0
):
    matchups, outcomes, models, weights = preprocess_for_bt(battles)
    rng = np.random.default_rng(seed=seed)
    idxs = rng.multinomial(n=len(battles), pvals=weights / weights.sum(), size=(num_round))
    boot_weights = idxs.astype(np.float64) / len(battles)
    bt_fn = partial(fit_bt, matchups, outcomes, n_models=len(models), alpha=np.log(base), tol=tol)
    with mp.Pool(num_cpu if num_cpu else os.cpu_count()) as pool:
        results = list(pool.imap_unordered(bt_fn, boot_weights))
    ratings = np.array(results)
    scaled_ratings = scale_and_offset(ratings, models, scale, init_rating)
    df = pd.DataFrame(scaled_ratings, columns=models)
    return df[df.median().sort_values(ascending=False).index]


# --- the run ---------------------------------------------------------------------------------


def make_battles(n: int, m: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 100.0, m) * math.log(10) / 400  # natural scale
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    tie = rng.random(n) < 0.15
    a_won = rng.random(n) < expit(strength[a] - strength[b])
    winner = np.where(
        tie,
        np.where(rng.random(n) < 1 / 3, "tie (bothbad)", "tie"),
        np.where(a_won, "model_a", "model_b"),
    )
    names = np.array([f"model-{k:03d}" for k in range(m)], dtype=object)
    return pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner})


WINNER_CODE = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 3}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="FastChat's pool size (its default: os.cpu_count())",
    )
    parser.add_argument(
        "--no-noise-floor",
        action="store_true",
        help="skip FastChat's second bootstrap (seed 1), which shows how far two runs of the "
        "same method differ in interval width (Monte Carlo noise of 1,000 rounds)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*`disp` and `iprint`", category=DeprecationWarning)
    df = make_battles(args.battles, args.models)
    # Raw input for ours: the same three columns as Python lists (what a query returns).
    raw = (df["model_a"].tolist(), df["model_b"].tolist(), [WINNER_CODE[w] for w in df["winner"]])
    print(
        f"{args.battles:,} battles, {args.models} models, {args.rounds} rounds; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}"
    )

    t = time.perf_counter()
    fc_scores = compute_bt(df)
    fc_boot = compute_bootstrap_bt(df, args.rounds, num_cpu=args.processes)
    t_fc = time.perf_counter() - t

    t = time.perf_counter()
    board = leaderboard(pair_table(*raw), rounds=args.rounds, seed=0)
    t_ours = time.perf_counter() - t

    import choix

    decisive = df[df["winner"].isin(["model_a", "model_b"])]
    index = {m: k for k, m in enumerate(board.models)}
    a = decisive["model_a"].map(index).to_numpy()
    b = decisive["model_b"].map(index).to_numpy()
    a_won = (decisive["winner"] == "model_a").to_numpy()
    t = time.perf_counter()
    data = np.column_stack([np.where(a_won, a, b), np.where(a_won, b, a)])
    choix.ilsr_pairwise(args.models, data, alpha=0.0, tol=1e-8)
    rng = np.random.default_rng(0)
    for _ in range(3):
        choix.ilsr_pairwise(
            args.models, data[rng.integers(0, len(data), len(data))], alpha=0.0, tol=1e-8
        )
    t_choix = (time.perf_counter() - t) / 4 * (1 + args.rounds)

    def widths(boot: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return tuple(boot[board.models].quantile(q).to_numpy() for q in (0.025, 0.975))

    fc = fc_scores.reindex(board.models).to_numpy()
    fc_lo, fc_hi = widths(fc_boot)
    width_fc, width_ours = fc_hi - fc_lo, board.upper - board.lower
    rel = np.abs(width_ours - width_fc) / width_fc
    floor = None
    if not args.no_noise_floor:
        lo1, hi1 = widths(compute_bootstrap_bt(df, args.rounds, num_cpu=args.processes, seed=1))
        floor = np.abs((hi1 - lo1) - width_fc) / width_fc
    rank_fc = 1 + (fc_lo[None, :] > fc_hi[:, None]).sum(axis=1)
    print()
    print(
        "| method | wall time | vs FastChat | max abs Δscore (Elo) | CI width Δ median / max | widths within 10 % | CI-aware ranks equal |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| FastChat `compute_bt` + `compute_bootstrap_bt` ({args.processes} processes) | {t_fc:.2f} s | 1.0x | — | — | — | — |"
    )
    if floor is not None:
        print(
            f"| FastChat's bootstrap again, seed 1 (noise floor; not timed) | — | — | 0 | "
            f"{100 * np.median(floor):.1f} % / {100 * floor.max():.1f} % | "
            f"{int((floor <= 0.1).sum())}/{args.models} | — |"
        )
    print(
        f"| choix `ilsr_pairwise` (decisive only; 4 fits timed, x{1 + args.rounds}) | ~{t_choix:.0f} s (est.) | {t_fc / t_choix:.2f}x | n/a (no ties) | n/a | n/a | n/a |"
    )
    print(
        f"| ours (`pair_table` + `leaderboard`, Poisson bootstrap, 2 threads) | {t_ours:.2f} s | **{t_fc / t_ours:.1f}x** | "
        f"{np.max(np.abs(board.scores - fc)):.4f} | {100 * np.median(rel):.1f} % / {100 * rel.max():.1f} % | "
        f"{int((rel <= 0.1).sum())}/{args.models} | "
        f"{int((rank_fc == board.ranks).sum())}/{args.models} |"
    )
    print(
        f"\nmean 95 % CI width: FastChat {width_fc.mean():.2f} Elo, ours {width_ours.mean():.2f} Elo; failed rounds: {board.failed_rounds}"
    )


if __name__ == "__main__":
    main()
