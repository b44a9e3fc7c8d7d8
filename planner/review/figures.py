r"""A query type's instance figures, measured from a trace: what ``planner demand --figures`` writes.

The attainment capacity model (:mod:`planner.capacity`) reads a type's traffic from a few figures:
its mean rate and burst percentiles, its length distributions and the two lengths' correlation.
This module measures exactly those from a request stream, so an instance can be written from a
trace without a hand-made script (``benchmarks/derive_*_instance.py`` use the same functions):

    arrival_rate           requests / span (the span the demand covers, every type alike)
    arrival_rate_p90/p99   percentiles of the type's rate over consecutive windows of the
                           instance's ``arrival_window_s`` from the span's start; windows with no
                           request of the type count as rate 0; numpy's linear interpolation
    arrival_rate_slow_p90/p99
                           percentiles of the type's load over the instance's
                           ``arrival_slow_window_s`` (minutes) as a rate: its requests weighted
                           by their tokens (prompt + output) over the type's mean, per second —
                           a stretch of long prompts at the mean request rate is a surge of work
                           (azure-2023's conv-long: 10 minutes at 1.17× the rate and 1.3× the
                           prompt length); over k = round(slow / window) consecutive windows,
                           sliding by one (an hour holds only 12 disjoint 5-minute windows: too
                           few for a p99)
    arrival_slow_length_share
                           over the same windows, the slope of log(tokens per request) on
                           log(load), clipped to [0, 1]: how much of the swings is longer
                           requests rather than more of them
    arrival_cluster_s/_excess
                           requests fired together: the mean number of the type's other
                           requests within ±CLUSTER_S of one of its requests beyond what Poisson
                           arrivals at each window's own count put there (:func:`cluster_excess`;
                           without the largest burst's episode where that is injected apart),
                           written from MIN_CLUSTER up (azure-2023's code: 12.3; its conversation
                           traces and Mooncake's: ≤ 0.1)
    input/output_tokens    mean, and p10/p50/p90/p99 (linear interpolation, as pandas), min, max,
                           and the TABLE_PERCENTILES as *_tokens_percentiles
    length_correlation     Pearson correlation of the normal scores of the two lengths' ranks
                           (ties averaged): the Gaussian copula parameter the capacity model
                           draws (prompt, output) pairs with

And one figure the model cannot carry, reported so the user knows when to distrust it:

    largest burst          the most requests of the type inside any ``BURST_S``-second interval
                           (a sliding window over arrivals, exact), written as
                           ``arrival_burst_rate`` (those requests / BURST_S), ``arrival_burst_s``
                           and ``arrival_burst_share`` (their share of the type's requests) where
                           the warning below holds; the capacity simulation injects it. A
                           percentile profile of
                           10-s windows describes typical bursts, not the hour's largest one;
                           when that one burst holds more than ``1 − target`` of the type's
                           requests (and it is more than twice the p99 window rate over
                           those seconds), attainment over the trace is decided by whether a pool
                           absorbs it (azure-2023's code trace: 271 requests within 5 s, 21× the
                           mean rate, 3.1% of the hour's requests): the warning says so, and
                           plans for such traffic are worth checking by replay
                           (``planner solve --validate``), which derates the pools that miss.
                           With it ``arrival_burst_envelope``: the most requests within
                           intervals of ENVELOPE_S that contain the burst's, as long as each
                           widening adds requests faster than the p90 window rate (the code
                           trace: 415 within 10 s, 500 within 20 s — a flood after a gap).

Memory: per type one counter of (prompt, output) pairs (it grows with distinct pairs only), two
counters per window (requests, tokens), the arrivals of the last ``ENVELOPE_S[-1]`` seconds, and
those around the largest burst so far.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BURST_S = 5.0  # the largest-burst interval, s: about a TTFT limit, the scale a queue must clear in
CLUSTER_S = 2.0  # the cluster interval's half-width, s: a few decode steps of a short answer, and a prefill
MIN_CLUSTER = 0.5  # excess neighbours per request below which arrivals are written as unclustered
MIN_BURST = 20  # requests: fewer inside BURST_S is never warned about
ENVELOPE_S = (10.0, 20.0, 30.0, 60.0)  # the wider intervals around the largest burst, s
PERCENTILES = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
# The length knots written as *_tokens_percentiles beside the named ones: dense where attainment
# is decided (the shortest replies share decode steps with prompt chunks; the longest prompts
# queue), so the capacity model interpolates over a few percent of requests, not a decile.
TABLE_PERCENTILES = (1.0, 2.0, 5.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 95.0, 98.0, 99.5, 99.9)


def weighted_quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation quantile of ``values`` repeated ``counts`` times (values sorted
    ascending, counts ≥ 1), without expanding them."""
    if len(values) == 0:
        return 0.0
    cum = np.cumsum(counts)
    n = int(cum[-1])
    h = q * (n - 1)
    lo = math.floor(h)
    below = values[np.searchsorted(cum, lo, "right")]
    above = values[np.searchsorted(cum, min(lo + 1, n - 1), "right")]
    return float(below + (h - lo) * (above - below))


def _normal_scores(values: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Normal score of each distinct value: Φ⁻¹((average rank − ½)/n) with ties averaged."""
    from planner.lengths import norm_ppf

    order = np.argsort(values, kind="stable")
    c = counts[order]
    first = np.cumsum(c) - c + 1  # rank of the first copy (1-based)
    avg = first + (c - 1) / 2.0
    z = np.empty(len(values))
    z[order] = norm_ppf((avg - 0.5) / n)
    return z


def length_correlation(inp: Iterable[int], out: Iterable[int], counts: Iterable[int] | None = None) -> float:
    """The instance's ``length_correlation`` (module docstring) of paired lengths, each pair
    ``counts`` times (default once). 0 for fewer than 3 requests or a constant length."""
    a = np.asarray(list(inp), dtype=np.float64)
    b = np.asarray(list(out), dtype=np.float64)
    w = np.ones(len(a)) if counts is None else np.asarray(list(counts), dtype=np.float64)
    n = int(w.sum())
    if n < 3:
        return 0.0
    za = _normal_scores_of(a, w, n)
    zb = _normal_scores_of(b, w, n)
    ma, mb = np.average(za, weights=w), np.average(zb, weights=w)
    cov = np.average((za - ma) * (zb - mb), weights=w)
    va, vb = np.average((za - ma) ** 2, weights=w), np.average((zb - mb) ** 2, weights=w)
    if va <= 0 or vb <= 0:
        return 0.0
    return float(cov / math.sqrt(va * vb))


def _normal_scores_of(x: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    vals, inv = np.unique(x, return_inverse=True)
    counts = np.bincount(inv, weights=w)
    return _normal_scores(vals, counts, n)[inv]


def slow_load(
    counts: np.ndarray, tokens: np.ndarray, window_s: float, k: int
) -> tuple[np.ndarray | None, float | None]:
    """The load over every run of k consecutive windows (requests and tokens per window of
    ``window_s``), as a rate: requests weighted by their tokens over the type's mean, per second;
    and its length share β (:func:`_length_share`). (None, None) with fewer than k windows."""
    per = tokens.sum() / max(counts.sum(), 1.0)  # mean tokens per request
    if len(counts) < k or per <= 0:
        return None, None
    load = np.convolve(tokens / per, np.ones(k), "valid") / (k * window_s)
    return load, _length_share(load, np.convolve(counts, np.ones(k), "valid"), k * window_s)


def _length_share(load: np.ndarray, requests: np.ndarray, window_s: float) -> float | None:
    """β: the slope of log(tokens per request) on log(load) over the slow windows holding
    requests, clipped to [0, 1] — the share of the load's swings that longer requests carry
    (azure-2023's conv-long: 0.56, a 10-minute stretch of long prompts; conv-short's surges come
    with shorter requests: 0). None with fewer than 3 such windows or no spread."""
    m = requests > 0
    if m.sum() < 3:
        return None
    x = np.log(load[m])
    y = np.log(load[m] * window_s / requests[m])  # tokens per request, in units of the mean
    var = float(np.var(x))
    if var <= 1e-12:
        return None
    return float(np.clip(np.cov(x, y, bias=True)[0, 1] / var, 0.0, 1.0))


def _num(x: float) -> int | float:
    """A whole number as an int (YAML ``1``, not ``1.0``)."""
    return int(x) if float(x).is_integer() else x


@dataclass
class TypeFigures:
    """Measured figures of one query type (module docstring); rates in requests/s, lengths in tokens."""

    id: str
    requests: int
    span_s: float
    window_s: float
    arrival_rate: float
    arrival_rate_p90: float
    arrival_rate_p99: float
    input_tokens: dict[str, float]  # mean, p10, p50, p90, p99, min, max, and f"{p:g}" of TABLE_PERCENTILES
    output_tokens: dict[str, float]
    length_correlation: float
    burst_requests: int  # the most requests inside any BURST_S interval
    burst_s: float = BURST_S
    burst_envelope: tuple[tuple[float, float], ...] = ()  # [s, requests/s] around the largest burst
    arrival_rate_slow_p90: float | None = None  # None: the span holds no whole slow window
    arrival_rate_slow_p99: float | None = None
    slow_length_share: float | None = None  # β of arrival_slow_length_share
    cluster_excess: float = 0.0  # arrival_cluster_excess over CLUSTER_S (module docstring)
    # the rate figures above, by instance key, without the largest burst's episode (written where
    # it is injected)
    without_burst: dict[str, float] = field(default_factory=dict)
    # prefix reuse where the trace has prefix-block ids: the unbounded cache's token-weighted hit
    # ratio and [cache tokens, ratio] of LRU caches (planner.review.demand.measure_prefix_curve)
    prefix: tuple[float, tuple[tuple[int, float], ...]] | None = None

    @property
    def burst_share(self) -> float:
        """The largest burst's share of the type's requests."""
        return self.burst_requests / self.requests if self.requests else 0.0

    @property
    def burst_factor(self) -> float:
        """The largest burst's rate as a multiple of the mean rate."""
        return self.burst_requests / self.burst_s / self.arrival_rate if self.arrival_rate > 0 else 0.0

    def burst_warning(self, target: float) -> str | None:
        """A line when the largest burst alone holds more than ``1 − target`` of the requests and
        is no burst the percentiles describe: more than twice the p99 window rate sustained over
        ``burst_s``, and at least ``MIN_BURST`` requests (a short trace's couple of neighbours is
        no burst)."""
        if self.requests == 0 or self.burst_share <= 1.0 - target or self.burst_requests < MIN_BURST:
            return None
        if self.burst_requests <= 2.0 * self.arrival_rate_p99 * self.burst_s:
            return None
        return (
            f"{self.id}: its largest burst, {self.burst_requests:,} requests within {self.burst_s:g} s "
            f"({self.burst_factor:.1f}× the mean rate), holds {self.burst_share:.1%} of its requests, more "
            f"than the {1 - target:.0%} the attainment target lets miss: burst percentiles do not describe "
            "it (the arrival_burst_* figures do; check plans by replay: planner solve --validate this trace)"
        )

    def query_type_doc(self, target: float = 0.99) -> dict[str, Any]:
        """The figures as instance keys (``query_types[]`` entry without SLOs or accuracy); the
        largest burst only where :meth:`burst_warning` says the percentiles do not describe it
        (elsewhere it is one of the windows they describe, and injecting it would count it twice),
        and then the rate percentiles without its episode."""
        doc: dict[str, Any] = {"id": self.id, "arrival_rate": round(self.arrival_rate, 4)}
        if self.arrival_rate > 0:
            doc["arrival_rate_p90"] = round(self.arrival_rate_p90, 4)
            doc["arrival_rate_p99"] = round(self.arrival_rate_p99, 4)
            if self.arrival_rate_slow_p90 is not None and self.arrival_rate_slow_p99 is not None:
                doc["arrival_rate_slow_p90"] = round(max(self.arrival_rate_slow_p90, 1e-4), 4)
                doc["arrival_rate_slow_p99"] = round(max(self.arrival_rate_slow_p99, 1e-4), 4)
                if self.slow_length_share is not None:
                    doc["arrival_slow_length_share"] = round(self.slow_length_share, 2)
        injected = self.burst_warning(target) is not None
        if injected:  # a burst the percentiles do not describe
            # The percentiles then describe the traffic apart from the episode, which the capacity
            # model injects with its weight: measured with it, its windows would count it again
            # (azure-2023's code: its 10-s p99, 15.4 req/s, is the flood itself).
            for key, v in self.without_burst.items():
                if key in doc and key != "arrival_cluster_excess":
                    doc[key] = round(v, 2) if key == "arrival_slow_length_share" else round(max(v, 1e-4), 4)
            doc["arrival_burst_rate"] = round(self.burst_requests / self.burst_s, 4)
            doc["arrival_burst_s"] = self.burst_s
            doc["arrival_burst_share"] = round(self.burst_share, 6)
            if self.burst_envelope:
                doc["arrival_burst_envelope"] = [list(e) for e in self.burst_envelope]
        excess = self.cluster_excess
        if injected:  # measured apart from the episode, which is injected apart
            excess = self.without_burst.get("arrival_cluster_excess", excess)
        if excess >= MIN_CLUSTER:
            doc["arrival_cluster_s"] = CLUSTER_S
            doc["arrival_cluster_excess"] = round(excess, 2)
        doc["length_correlation"] = round(self.length_correlation, 2)
        for side, stats in (("input_tokens", self.input_tokens), ("output_tokens", self.output_tokens)):
            doc[side] = max(1, round(stats["mean"]))
            for p, _ in PERCENTILES:
                doc[f"{side}_{p}"] = max(1, round(stats[p]))
            if "min" in stats:
                doc[f"{side}_min"] = max(1, round(stats["min"]))
                doc[f"{side}_max"] = max(1, round(stats["max"]))
            doc[f"{side}_percentiles"] = [[_num(pc), max(1, round(stats[f"{pc:g}"]))] for pc in TABLE_PERCENTILES]
        if self.prefix is not None:
            # rounded down: a plan sized on them must not count on reuse the trace did not have
            ratio, curve = self.prefix
            doc["prefix_hit_ratio"] = math.floor(ratio * 1000) / 1000
            if curve:
                top = doc["prefix_hit_ratio"]
                doc["prefix_hit_curve"] = [[size, min(math.floor(r * 1000) / 1000, top)] for size, r in curve]
                doc["prefix_hit_rate"] = doc["arrival_rate"]  # the traffic the curve describes
        return doc


@dataclass
class _TypeAcc:
    pairs: Counter[tuple[int, int]] = field(default_factory=Counter)
    windows: Counter[int] = field(default_factory=Counter)
    tokens: Counter[int] = field(default_factory=Counter)  # prompt + output tokens per window
    recent: deque[float] = field(default_factory=deque)
    burst: int = 0
    context: deque[tuple[float, int]] = field(default_factory=deque)  # (arrival, tokens), last ENVELOPE_S[-1] s
    peak_end: float = math.nan  # end of the largest burst's BURST_S interval
    around: list[tuple[float, int]] = field(default_factory=list)  # (arrival, tokens) within ENVELOPE_S[-1] of it
    near: Counter[int] = field(default_factory=Counter)  # pairs within CLUSTER_S, by the later one's window


class FiguresBuilder:
    """Streams (type, arrival, prompt, output) and measures each type's figures (module docstring).

    ``start_s`` is where the windows of ``window_s`` start; arrivals must come in time order.
    """

    def __init__(
        self, type_ids: list[str], window_s: float, start_s: float = 0.0, slow_window_s: float = 300.0
    ) -> None:
        self.type_ids = list(type_ids)
        self.window_s = float(window_s)
        self.slow_windows = max(1, round(slow_window_s / self.window_s))  # fast windows per slow one
        self.start_s = float(start_s)
        self._acc = {t: _TypeAcc() for t in self.type_ids}

    def add(self, type_id: str, arrival_s: float, n_in: int, n_out: int) -> None:
        acc = self._acc[type_id]
        acc.pairs[(int(n_in), int(n_out))] += 1
        k = int((arrival_s - self.start_s) // self.window_s)
        acc.windows[k] += 1
        acc.tokens[k] += int(n_in) + int(n_out)
        acc.recent.append(arrival_s)
        while acc.recent[0] < arrival_s - BURST_S:
            acc.recent.popleft()
        pairs = -1  # the arrivals within CLUSTER_S before this one (the deque ends with it)
        for x in reversed(acc.recent):
            if x < arrival_s - CLUSTER_S:
                break
            pairs += 1
        if pairs:
            acc.near[k] += pairs
        wide = ENVELOPE_S[-1]
        acc.context.append((arrival_s, int(n_in) + int(n_out)))
        while acc.context[0][0] < arrival_s - wide:
            acc.context.popleft()
        if len(acc.recent) > acc.burst:  # a new largest burst: keep what surrounds it
            acc.burst, acc.peak_end, acc.around = len(acc.recent), arrival_s, list(acc.context)
        elif arrival_s <= acc.peak_end + wide:
            acc.around.append((arrival_s, int(n_in) + int(n_out)))

    @staticmethod
    def _envelope(acc: _TypeAcc, p90_rate: float) -> tuple[tuple[tuple[float, float], ...], tuple[float, float]]:
        """[seconds, requests/s] of the wider intervals around the largest burst (module
        docstring): the most arrivals in an interval of each ENVELOPE_S length that contains the
        burst's, widening while the requests each adds come faster than the type's p90 window
        rate (beyond that the episode is over: the percentiles and slow states describe it); and
        the episode's interval (the widest one kept, else the burst's)."""
        a = np.sort(np.asarray([t for t, _ in acc.around]))
        if not len(a) or math.isnan(acc.peak_end):
            return (), (math.nan, math.nan)
        out: list[tuple[float, float]] = []
        n_prev, s_prev = acc.burst, BURST_S
        span = (acc.peak_end - BURST_S, acc.peak_end)
        for d in ENVELOPE_S:
            lo, hi = acc.peak_end - d, acc.peak_end - BURST_S  # interval starts that contain the burst
            starts = np.concatenate([[lo], a[(a >= lo) & (a <= hi)]])
            got = np.searchsorted(a, starts + d, side="right") - np.searchsorted(a, starts, side="left")
            n = max(int(got.max()), n_prev)
            if (n - n_prev) / (d - s_prev) <= p90_rate:
                break
            out.append((d, round(n / d, 4)))
            n_prev, s_prev = n, d
            x = float(starts[int(got.argmax())])
            span = (x, x + d)
        return tuple(out), span

    def finish(self, span_s: float) -> dict[str, TypeFigures]:
        """The figures of every type over a span of ``span_s`` seconds from ``start_s``."""
        n_win = max(1, math.ceil(span_s / self.window_s - 1e-9))
        out: dict[str, TypeFigures] = {}
        for t, acc in self._acc.items():
            counts = np.zeros(n_win)
            for k, c in acc.windows.items():
                counts[min(max(k, 0), n_win - 1)] += c  # the last arrival may sit on the span's end
            tokens = np.zeros(n_win)
            for k, c in acc.tokens.items():
                tokens[min(max(k, 0), n_win - 1)] += c
            full = self._rate_figures(counts, tokens)
            envelope, (e0, e1) = self._envelope(acc, full["arrival_rate_p90"])
            # the same figures without the burst episode (written where it is injected apart)
            quiet_c, quiet_t = counts.copy(), tokens.copy()
            for at, tok in acc.around:
                if e0 <= at <= e1:
                    k = min(max(int((at - self.start_s) // self.window_s), 0), n_win - 1)
                    quiet_c[k] -= 1
                    quiet_t[k] -= tok
            near = np.zeros(n_win)
            for k, c in acc.near.items():
                near[min(max(k, 0), n_win - 1)] += c
            episode = np.zeros(n_win, dtype=bool)
            if not math.isnan(e0):
                k0 = min(max(int((e0 - self.start_s) // self.window_s), 0), n_win - 1)
                k1 = min(max(int((e1 - self.start_s) // self.window_s), 0), n_win - 1)
                episode[k0 : k1 + 2] = True  # and the window after it (its pairs across the edge)
            n = sum(acc.pairs.values())
            keys = list(acc.pairs)
            w = np.array([acc.pairs[k] for k in keys], dtype=np.float64)
            lengths = np.array(keys, dtype=np.float64).reshape(-1, 2)
            sides = {}
            for j, side in enumerate(("input", "output")):
                vals, inv = np.unique(lengths[:, j], return_inverse=True)
                cnt = np.bincount(inv, weights=w) if n else np.zeros(0)
                stats = {"mean": float(vals @ cnt / n) if n else 0.0}
                for p, q in PERCENTILES:
                    stats[p] = weighted_quantile(vals, cnt, q)
                for pc in TABLE_PERCENTILES:
                    stats[f"{pc:g}"] = weighted_quantile(vals, cnt, pc / 100.0)
                if n:
                    stats["min"], stats["max"] = float(vals[0]), float(vals[-1])
                sides[side] = stats
            out[t] = TypeFigures(
                id=t,
                requests=n,
                span_s=span_s,
                window_s=self.window_s,
                arrival_rate=n / span_s if span_s > 0 else 0.0,
                arrival_rate_p90=full["arrival_rate_p90"],
                arrival_rate_p99=full["arrival_rate_p99"],
                input_tokens=sides["input"],
                output_tokens=sides["output"],
                length_correlation=length_correlation(lengths[:, 0], lengths[:, 1], w) if n else 0.0,
                burst_requests=acc.burst,
                burst_envelope=envelope,
                without_burst=self._rate_figures(quiet_c, quiet_t)
                | {"arrival_cluster_excess": cluster_excess(counts, near, self.window_s, ~episode)},
                cluster_excess=cluster_excess(counts, near, self.window_s, np.ones(n_win, dtype=bool)),
                arrival_rate_slow_p90=full.get("arrival_rate_slow_p90"),
                arrival_rate_slow_p99=full.get("arrival_rate_slow_p99"),
                slow_length_share=full.get("arrival_slow_length_share"),
            )
        return out

    def _rate_figures(self, counts: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
        """The rate figures of requests and tokens per window, by instance key: the window
        rates' p90/p99, and where the span holds a slow window the slow load's p90/p99 and its
        length share."""
        rates = counts / self.window_s
        out = {"arrival_rate_p90": float(np.quantile(rates, 0.9)), "arrival_rate_p99": float(np.quantile(rates, 0.99))}
        slow, beta = slow_load(counts, tokens, self.window_s, self.slow_windows)
        if slow is not None:
            out["arrival_rate_slow_p90"] = float(np.quantile(slow, 0.9))
            out["arrival_rate_slow_p99"] = float(np.quantile(slow, 0.99))
        if beta is not None:
            out["arrival_slow_length_share"] = beta
        return out


def cluster_excess(counts: np.ndarray, near: np.ndarray, window_s: float, keep: np.ndarray) -> float:
    r"""arrival_cluster_excess over the windows ``keep``: the mean number of other requests within
    ±CLUSTER_S of a request, beyond what Poisson arrivals at each window's rate put there,

        x = 2·Σ_k (P_k − E[P_k]) / Σ_k c_k,
        E[P_k] = C(c_k, 2)·(2s/W − s²/W²) + c_{k−1}·c_k·s²/(2W²)

    with P_k the pairs within s = CLUSTER_S whose later request falls in window k (of W s, c_k
    requests): pairs inside a window of uniform arrivals, and across its start. C(c, 2) is
    unbiased for a Poisson count's λ²/2, so x is 0 on Poisson traffic whatever its window rates;
    floored at 0."""
    s, w = CLUSTER_S, window_s
    if s >= w or not keep.any():
        return 0.0
    prev = np.concatenate([[0.0], counts[:-1]])
    expected = counts * (counts - 1) / 2 * (2 * s / w - s * s / (w * w)) + prev * counts * s * s / (2 * w * w)
    n = float(counts[keep].sum())
    return max(0.0, 2.0 * float((near[keep] - expected[keep]).sum()) / n) if n else 0.0


def figures_yaml(
    figs: dict[str, TypeFigures], window_s: float, source: str, targets: dict[str, float], slow_window_s: float = 300.0
) -> str:
    """The figures as an instance fragment: ``arrival_window_s``, ``arrival_slow_window_s`` and one
    ``query_types`` entry per type (to merge with SLOs, ``max_error`` and the rest by hand), with the
    burst warnings as comments."""
    import yaml

    lines = [
        f"# Measured by planner demand --figures from {source}.",
        "# Merge into an instance: add each type's slo, task/max_error and penalties.",
    ]
    for f in figs.values():
        lines.append(
            f"# {f.id}: {f.requests:,} requests over {f.span_s:,.1f} s; largest burst {f.burst_requests:,} "
            f"within {f.burst_s:g} s ({f.burst_share:.1%} of its requests)"
        )
        if (w := f.burst_warning(targets.get(f.id, 0.99))) is not None:
            lines.append(f"#   warning: {w}")
    body = {
        "arrival_window_s": window_s,
        "arrival_slow_window_s": slow_window_s,
        "query_types": [f.query_type_doc(targets.get(f.id, 0.99)) for f in figs.values()],
    }
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, width=100, default_flow_style=None)
