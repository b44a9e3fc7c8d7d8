"""Output-length prediction for placement (Aladdin): an unbiased historical average per input bucket.

Output lengths are unknown at arrival. Aladdin predicts them with the mean output of past requests
whose input length fell in the same bucket; errors partly cancel within a worker's batch. When a
request outlives its prediction, its remaining length is re-predicted as the conditional mean
E[O | O > g] of the same bucket's history, where g is what it has generated so far.

Memory is fixed: per bucket a histogram of outputs on geometric bins (counts and sums), so a
million-request trace costs the same as a thousand-request one.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

# Input buckets: powers of two from 64 to 64k tokens (Aladdin buckets by input length).
INPUT_EDGES: tuple[int, ...] = tuple(64 * 2**i for i in range(11))
OUTPUT_BINS = 96
OUTPUT_MAX = 1 << 17


class LengthPredictor:
    """Per input-length bucket: prior mean (pseudo-counts) plus every finished request's output."""

    def __init__(self, prior_output: float, prior_weight: float = 8.0) -> None:
        nb = len(INPUT_EDGES) + 1
        self.edges = np.geomspace(1.0, OUTPUT_MAX, OUTPUT_BINS + 1)
        self.count = np.zeros((nb, OUTPUT_BINS))
        self.total = np.zeros((nb, OUTPUT_BINS))
        self.prior = float(prior_output)
        self.prior_weight = prior_weight
        self.n = np.zeros(nb)
        self.sum = np.zeros(nb)

    @staticmethod
    def bucket(input_tokens: int) -> int:
        return bisect.bisect_right(INPUT_EDGES, input_tokens)

    def predict(self, input_tokens: int) -> float:
        """Mean output of the bucket's history, pulled toward the prior while history is thin."""
        b = self.bucket(input_tokens)
        return (self.sum[b] + self.prior * self.prior_weight) / (self.n[b] + self.prior_weight)

    def observe(self, input_tokens: int, output_tokens: int) -> None:
        b = self.bucket(input_tokens)
        j = min(int(np.searchsorted(self.edges, output_tokens, side="right")) - 1, OUTPUT_BINS - 1)
        j = max(j, 0)
        self.count[b, j] += 1
        self.total[b, j] += output_tokens
        self.n[b] += 1
        self.sum[b] += output_tokens

    def outlived(self, input_tokens: int, generated: int) -> float:
        """E[O | O > generated] from the bucket's history; when no past request ran that long, the
        request is assumed to be half-way (a doubling rule, as for an unknown heavy tail)."""
        b = self.bucket(input_tokens)
        j = max(int(np.searchsorted(self.edges, generated, side="right")) - 1, 0)
        cnt = self.count[b, j + 1 :].sum()
        if cnt > 0:
            return max(float(self.total[b, j + 1 :].sum() / cnt), generated + 1.0)
        return float(max(2 * generated, generated + 1, math.ceil(self.prior)))
