"""Fast exact Poisson draws for a fixed vector of rates (the bootstrap's cell counts).

A bootstrap redraws the same few thousand cells a thousand times, and the cells' rates are
counts: a pair table of a million battles among 100 models has ~15,000 cells but only ~150
distinct counts. numpy's sampler (PTRS rejection, ~55 ns a draw) treats every draw afresh;
inverting each distinct rate's CDF once, with a guide table (Chen & Asau's indexed search),
turns a draw into a uniform, two table reads and rarely a step: ~3x faster, and exact to
double precision (a tail beyond 12 standard deviations, probability < 1e-30, is cut).
"""

from __future__ import annotations

import numpy as np
from scipy.special import pdtr

GUIDE = 1024  # guide-table buckets per distinct rate: nearly every draw needs no search step
MAX_DISTINCT = 4096  # more distinct rates (weighted counts): numpy's sampler is as fast
MAX_TABLE = 4_000_000  # CDF entries in all; very large rates make long tables


class PoissonSampler:
    """Draw [rounds, cells] Poisson(rates) as float arrays; `draw(rng, rounds)`."""

    def __init__(self, rates: np.ndarray, *, guide: int = GUIDE) -> None:
        rates = np.asarray(rates, dtype=float)
        if rates.ndim != 1 or (len(rates) and (not np.all(np.isfinite(rates)) or rates.min() < 0)):
            raise ValueError("Poisson rates must be a vector of finite numbers >= 0")
        self.rates = rates
        values, which = np.unique(rates, return_inverse=True)
        spans = [self._span(v) for v in values]
        self.tabled = 0 < len(values) <= MAX_DISTINCT and sum(hi - lo + 1 for lo, hi in spans) <= MAX_TABLE
        if not self.tabled:
            return
        grid = np.arange(guide) / guide
        cdfs, offsets, guides = [], [], []
        at = 0
        for v, (lo, hi) in zip(values, spans, strict=True):
            cdf = pdtr(np.arange(lo, hi + 1), v)
            cdf[-1] = np.inf  # every u < 1 stops here at the latest
            # guide[g] = the first k with F(k) > g / guide: the search for u starts there.
            guides.append(at + np.searchsorted(cdf, grid, side="right"))
            offsets.append(at - lo)
            cdfs.append(cdf)
            at += len(cdf)
        self.guide_size = guide
        self.cdf = np.concatenate(cdfs)
        self.guide = np.concatenate(guides).astype(np.intp)
        self.bucket0 = (which * guide).astype(np.intp)  # each cell's first guide entry
        self.offset = np.asarray(offsets, dtype=float)[which]  # table position -> count

    @staticmethod
    def _span(v: float) -> tuple[int, int]:
        sd = float(np.sqrt(v))
        return max(0, int(v - 12 * sd - 20)), int(np.ceil(v + 12 * sd + 20))

    def draw(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """Return float counts [rounds, cells], row r an independent draw of every cell."""
        if not self.tabled:
            return rng.poisson(self.rates, size=(rounds, len(self.rates))).astype(float)
        u = rng.random((rounds, len(self.rates)))
        k = np.multiply(u, self.guide_size).astype(np.intp)
        k += self.bucket0
        k = self.guide[k]
        # Inverse CDF: the count is the first k with F(k) > u; step the few that start short.
        flat_k, flat_u = k.reshape(-1), u.reshape(-1)
        short = np.flatnonzero(self.cdf[flat_k] <= flat_u)
        while len(short):
            flat_k[short] += 1
            short = short[self.cdf[flat_k[short]] <= flat_u[short]]
        out = k.astype(float)
        out -= self.offset
        return out
