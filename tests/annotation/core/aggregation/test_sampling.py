"""The bootstrap's Poisson sampler draws from the exact Poisson distribution."""

import numpy as np
import pytest
from scipy.stats import chisquare, poisson

from annotation.core.aggregation import sampling
from annotation.core.aggregation.sampling import PoissonSampler

RATES = np.array([0.0, 0.3, 4.0, 86.0, 86.5, 2500.0, 86.0])


def _fit_p_value(draws: np.ndarray, rate: float) -> float:
    """Chi-square goodness of fit of integer draws to Poisson(rate), tails pooled."""
    lo, hi = int(poisson.ppf(1e-4, rate)), int(poisson.ppf(1 - 1e-4, rate))
    ks = np.arange(lo, hi + 1)
    observed = np.array(
        [np.sum(draws < lo + 1)]
        + [np.sum(draws == k) for k in ks[1:-1]]
        + [np.sum(draws >= hi)]
    )
    expected = np.concatenate(
        [[poisson.cdf(lo, rate)], poisson.pmf(ks[1:-1], rate), [poisson.sf(hi - 1, rate)]]
    ) * len(draws)
    return chisquare(observed, expected * observed.sum() / expected.sum()).pvalue


def test_draws_follow_the_poisson_distribution():
    draws = PoissonSampler(RATES).draw(np.random.default_rng(7), 100_000)
    assert draws.shape == (100_000, len(RATES)) and draws.dtype == float
    assert np.all(draws == np.round(draws)) and np.all(draws >= 0)
    assert np.all(draws[:, 0] == 0)
    for c, rate in enumerate(RATES):
        if rate == 0:
            continue
        column = draws[:, c]
        assert column.mean() == pytest.approx(rate, rel=0.02, abs=0.01)
        assert column.var() == pytest.approx(rate, rel=0.03)
        assert _fit_p_value(column, rate) > 1e-3, rate
    # The two cells with the same rate are independent of each other.
    assert abs(np.corrcoef(draws[:, 3], draws[:, 6])[0, 1]) < 0.02


def test_the_fit_check_rejects_a_wrong_distribution():
    """The goodness-of-fit check above can fail: numpy's draws pass it, shifted ones do not."""
    good = np.random.default_rng(7).poisson(86.0, 100_000)
    assert _fit_p_value(good, 86.0) > 1e-3
    assert _fit_p_value(good + 1, 86.0) < 1e-6
    assert _fit_p_value(np.random.default_rng(7).poisson(88.0, 100_000), 86.0) < 1e-6


def test_same_generator_state_gives_the_same_draws_and_rounds_are_independent():
    sampler = PoissonSampler(RATES)
    a = sampler.draw(np.random.default_rng(3), 50)
    b = sampler.draw(np.random.default_rng(3), 50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


def test_many_distinct_rates_use_numpys_sampler(monkeypatch):
    monkeypatch.setattr(sampling, "MAX_DISTINCT", 10)
    rates = np.linspace(1.0, 50.0, 40)
    sampler = PoissonSampler(rates)
    assert not sampler.tabled
    draws = sampler.draw(np.random.default_rng(0), 20_000)
    np.testing.assert_allclose(draws.mean(axis=0), rates, rtol=0.05)
    assert PoissonSampler(rates[:5]).tabled


@pytest.mark.parametrize("bad", [[-1.0, 2.0], [np.nan], [np.inf], [[1.0, 2.0]]])
def test_rejects_bad_rates(bad):
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        PoissonSampler(np.array(bad))


def test_no_cells():
    """A pair table without battles (a leaderboard held up by its prior alone) has no cells."""
    assert PoissonSampler(np.array([])).draw(np.random.default_rng(0), 3).shape == (3, 0)
