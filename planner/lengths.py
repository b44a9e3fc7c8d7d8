r"""Token-length distributions of a query type, from the few figures an instance gives.

An instance states a type's mean prompt and output lengths and, optionally, their percentiles
(``input_tokens_p10/p50/p90/p99``, ``output_tokens_p10/p50/p90/p99``, and any more as
``*_tokens_percentiles`` [percentile, tokens] pairs). The attainment capacity model
(:mod:`planner.capacity`) needs whole distributions, because the requests that miss an SLO are the
long prompts (TTFT), the short outputs that share one decode step with a prefill chunk (TPOT) and
the long outputs (e2e). The distribution used here:

    log Q(u) is piecewise linear in the normal score z = Φ⁻¹(u), through the knots
    (−1.2816, log p10), (0, log p50), (1.2816, log p90), (2.3263, log p99)  [those given; p10
    only with p50] and (Φ⁻¹(p/100), log v) for each [p, v] of ``*_tokens_percentiles`` (then
    every figure is a knot), extended beyond the first and last knots, and clipped to
    [min_tokens, max_tokens].
    With the median given, the segments between the knots bend (y_k + Δy·t^b, knots kept) so
    that the mean is the stated one, the lower extension's slope moving only where no bend can
    (:meth:`LengthDistribution._match_mean`); otherwise the extensions have the end segments'
    slopes.

With p50 and p90 alone this is a lognormal; p99 bends its upper tail. A missing p50 is solved
so that the mean of the clipped distribution equals the stated mean (when no median achieves it
exactly, the closest one is taken and :attr:`LengthDistribution.mean_error` says by how much).
With no percentile at all the length is the mean, as the mean-latency model assumes.

Samples are stratified (u_j = (j + ½)/n, shuffled with a seeded generator): deterministic, and
every sample of n requests has the distribution's shape, which keeps attainment estimates from a
thousand requests steady.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

Z90 = 1.2815515655446004  # Φ⁻¹(0.9)
Z99 = 2.3263478740408408  # Φ⁻¹(0.99)
_GRID = 4001  # quantile grid for means (midpoint rule over u)
MEAN_TOL = 0.005  # relative mean error left alone when the median is given


@dataclass(frozen=True)
class LengthDistribution:
    """Quantile function of one length (prompt or output tokens); see the module docstring."""

    mean: float
    knots_z: tuple[float, ...]  # normal scores of the knots
    knots_log: tuple[float, ...]  # log tokens at the knots
    max_tokens: float
    mean_error: float = 0.0  # relative error of the achieved mean (0 when exact)
    # Slopes of log Q in z beyond the first and last knots (None: the end segments' slopes);
    # solved so the mean matches when the median is given (see :meth:`_match_mean`).
    lo_slope: float | None = None
    hi_slope: float | None = None
    # Shape of log Q between knots: y_k + (y_k+1 − y_k)·t^bend with t the position in the
    # segment (1: linear); solved so the mean matches when the tails cannot (see _match_mean).
    bend: float = 1.0
    min_tokens: float = 1.0  # the shortest length (clip)

    @property
    def constant(self) -> bool:
        return len(self.knots_z) == 0

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Q(u) in tokens (floats, clipped to [min_tokens, max_tokens])."""
        u = np.asarray(u, float)
        if self.constant:
            return np.full(u.shape, min(max(self.mean, self.min_tokens), self.max_tokens))
        z = norm_ppf(np.clip(u, 1e-12, 1 - 1e-12))
        logq = _interp_extrap(z, self.knots_z, self.knots_log, self.lo_slope, self.hi_slope, self.bend)
        # Clip in log space: a wild slope (p90 of 1e-300 tokens) must not overflow exp.
        top = math.log(self.max_tokens)
        return np.clip(np.exp(np.clip(logq, 0.0, top)), self.min_tokens, self.max_tokens)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n stratified samples in whole tokens (≥ 1), in a seeded random order."""
        u = (np.arange(n) + 0.5) / n
        q = np.maximum(np.round(self.quantile(u)), 1.0).astype(np.int64)
        return q[rng.permutation(n)]

    @classmethod
    def of(
        cls,
        mean: float,
        p50: float | None = None,
        p90: float | None = None,
        p99: float | None = None,
        max_tokens: float = math.inf,
        p10: float | None = None,
        min_tokens: float = 1.0,
        percentiles: tuple[tuple[float, float], ...] = (),
    ) -> LengthDistribution:
        """The distribution with these figures (module docstring); ``p10`` is used with a ``p50``;
        clipped to [``min_tokens``, ``max_tokens``]. ``percentiles``: more knots, as [percentile,
        tokens] pairs (a type's ``*_tokens_percentiles``); with them every figure is a knot and
        the mean is matched as with a median (:meth:`_match_mean`)."""
        top = float(max_tokens) if math.isfinite(max_tokens) else 1e9
        if percentiles:
            pts = {float(p): float(v) for p, v in percentiles}
            for p, v in ((10.0, p10), (50.0, p50), (90.0, p90), (99.0, p99)):
                if v is not None:
                    pts.setdefault(p, float(v))
            ps = sorted(pts)
            z = norm_ppf(np.asarray(ps) / 100.0)
            floor = float(min(min_tokens, top))
            d = cls(float(mean), tuple(float(x) for x in z), tuple(math.log(pts[p]) for p in ps), top, min_tokens=floor)
            return d._match_mean()
        if min_tokens > 1.0:
            d = cls.of(mean, p50, p90, p99, max_tokens, p10)
            return replace(d, min_tokens=float(min(min_tokens, d.max_tokens)))._rematch()
        lower = p10 if p50 is not None else None
        given = [(z, v) for z, v in ((-Z90, lower), (0.0, p50), (Z90, p90), (Z99, p99)) if v is not None]
        if not given:
            return cls(float(mean), (), (), top)
        if p50 is not None:
            d = cls(float(mean), tuple(z for z, _ in given), tuple(math.log(v) for _, v in given), top)
            return d._match_mean()
        # Solve the median: the clipped mean grows with it (the upper knots are fixed).
        upper = [(z, math.log(v)) for z, v in given]

        def build(m: float) -> LengthDistribution:
            pts = [(0.0, math.log(m)), *upper]
            return cls(float(mean), tuple(z for z, _ in pts), tuple(v for _, v in pts), top)

        # The clipped mean is not monotone in the median (a lower median widens the spread), so
        # search log m on a grid, then refine around the best point.
        lo, hi = 0.0, math.log(min(v for _, v in given))
        best_m, best_gap = hi, math.inf
        for width, count in ((hi - lo, 121), (2 * (hi - lo) / 120, 61)):
            centre = best_m if math.isfinite(best_gap) else (lo + hi) / 2
            for x in np.linspace(max(lo, centre - width / 2), min(hi, centre + width / 2), count):
                gap = abs(build(math.exp(float(x)))._grid_mean() - mean)
                if gap < best_gap:
                    best_m, best_gap = float(x), gap
        best = build(math.exp(best_m))
        return cls(best.mean, best.knots_z, best.knots_log, top, best._mean_gap())

    def _match_mean(self) -> LengthDistribution:
        """The distribution with its shape solved so that its mean is the stated one, the knots
        kept. First the segments between the knots bend (:attr:`bend`: the mass between two
        percentiles moves up or down), the tails keeping the end segments' slopes — an output
        median of 374 with a mean of 266 (azure-2023's conv-long) sags the segment below the
        median towards its p10, as the trace's p25 of 83 does; mooncake-2025's chat-8k prompts
        (p90 6,812, p99 8,015 under an 8,192 bucket bound) bulge between p90 and p99. Only where
        no bend in [1/8, 8] reaches the mean does the lower tail move: thicker for a mean below,
        lighter (never a longer upper tail: beyond p99 nothing is known, and a mean forced there
        puts prompts past the type's real maximum) for one above. Bisections (the mean is
        monotone in each); the closest reachable mean when none matches (:attr:`mean_error`).
        (Until 2026-12 the lower tail moved first: outputs of 1–3 tokens for 5% of azure-2023's
        conv types where the trace has 14–45, and none below p10 for mooncake-2025's, whose
        traces have 5% under 10 tokens — the short replies that miss TPOT behind a prompt's
        chunk.)"""
        if len(self.knots_z) < 2:
            return replace(self, mean_error=self._mean_gap())
        x, y = self.knots_z, self.knots_log
        lo0 = (y[1] - y[0]) / (x[1] - x[0])
        hi0 = (y[-1] - y[-2]) / (x[-1] - x[-2])

        def solve(f: Callable[[float], float], a: float, b: float) -> float:
            """Root of f (monotone) in [a, b], or the end whose value is closer to zero."""
            fa, fb = f(a), f(b)
            if fa * fb > 0:
                return a if abs(fa) <= abs(fb) else b
            for _ in range(40):
                m = (a + b) / 2
                fm = f(m)
                if fm * fa > 0:
                    a, fa = m, fm
                else:
                    b = m
            return (a + b) / 2

        d = replace(self, lo_slope=lo0, hi_slope=hi0)
        if abs(d._mean_gap()) > MEAN_TOL:
            lb = solve(lambda v: replace(d, bend=math.exp(v))._mean_gap(), math.log(1 / 8), math.log(8.0))
            d = replace(d, bend=math.exp(lb))
        g = d._mean_gap()
        if g > MEAN_TOL:  # too long on average even sagged: a heavier lower tail
            lo = solve(lambda v: replace(d, lo_slope=v)._mean_gap(), lo0, max(lo0, 0.0) + 8.0)
            d = replace(d, lo_slope=lo)
        elif g < -MEAN_TOL and lo0 > 0:  # too short even bulged: a lighter lower tail
            lo = solve(lambda v: replace(d, lo_slope=v)._mean_gap(), 0.0, lo0)
            d = replace(d, lo_slope=lo)
        return replace(d, mean_error=d._mean_gap())

    def _rematch(self) -> LengthDistribution:
        """The mean matched again after a change of the clip (the shape solved anew with the
        median given; else only the error recorded)."""
        if len(self.knots_z) >= 2 and 0.0 in self.knots_z:
            return replace(self, bend=1.0, lo_slope=None, hi_slope=None)._match_mean()
        return replace(self, mean_error=self._mean_gap())

    def _grid_mean(self) -> float:
        u = (np.arange(_GRID) + 0.5) / _GRID
        return float(np.mean(self.quantile(u)))

    def _mean_gap(self) -> float:
        return self._grid_mean() / self.mean - 1.0


def norm_ppf(p: np.ndarray) -> np.ndarray:
    """Φ⁻¹(p), vectorised (Acklam's rational approximation, relative error < 1.2e-9)."""
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    p = np.asarray(p, float)
    q = np.where(p < 0.5, p, 1.0 - p)
    tail = q < 0.02425
    t = np.sqrt(-2.0 * np.log(np.where(tail, q, 0.5)))
    x_tail = (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
        (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1.0
    )
    r = (q - 0.5) ** 2
    x_mid = (
        (q - 0.5)
        * (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    )
    x = np.where(tail, x_tail, x_mid)  # both give Φ⁻¹(q) for q ≤ ½
    return np.where(p < 0.5, x, -x)


def _interp_extrap(
    z: np.ndarray,
    xs: tuple[float, ...],
    ys: tuple[float, ...],
    lo_slope: float | None = None,
    hi_slope: float | None = None,
    bend: float = 1.0,
) -> np.ndarray:
    """Piecewise through (xs, ys) — linear, or y_k + Δy·t^bend within a segment — extended
    linearly with the given slopes (default: the end segments'; a single knot: a constant)."""
    if len(xs) == 1:
        return np.full(z.shape, ys[0])
    x, y = np.asarray(xs), np.asarray(ys)
    if bend == 1.0:
        out = np.interp(z, x, y)
    else:
        k = np.clip(np.searchsorted(x, z, side="right") - 1, 0, len(x) - 2)
        t = np.clip((z - x[k]) / (x[k + 1] - x[k]), 0.0, 1.0)
        out = y[k] + (y[k + 1] - y[k]) * t**bend
    if lo_slope is None:
        lo_slope = (y[1] - y[0]) / (x[1] - x[0])
    if hi_slope is None:
        hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
    out = np.where(z < x[0], y[0] + (z - x[0]) * lo_slope, out)
    return np.where(z > x[-1], y[-1] + (z - x[-1]) * hi_slope, out)
