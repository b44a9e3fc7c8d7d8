r"""Iteration time of one replica in the forms a simulator uses.

:class:`IterationTable` is the replica model's exact iteration time τ laid out as lookups (what the
simulator runs); :class:`IterationModel` is Aladdin's linear form fitted to it (a summary for people
and Aladdin-style routers). :class:`planner.perf.model.ReplicaModel` builds both
(``iteration_table()``, ``iteration_model()``); the equations are in :mod:`planner.perf.model`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IterationModel:
    """Iteration time c0 + c1·P + c2·D + c3·ΣC + c4·A (:mod:`planner.perf.model`), seconds."""

    c0: float
    c1: float
    c2: float
    c3: float
    max_rel_error: float  # over the grid it was fitted on
    grid_points: int
    c4: float = 0.0

    def time(
        self,
        prefill_tokens: np.ndarray | float,
        decode_requests: np.ndarray | float,
        decode_context_tokens: np.ndarray | float,
        prefill_attention: np.ndarray | float = 0.0,
    ) -> np.ndarray | float:
        """Predicted iteration time, seconds (``decode_context_tokens`` = Σ context of the decodes,
        ``prefill_attention`` = Σ c·(k + c/2) over the prefill chunks)."""
        return (
            self.c0
            + self.c1 * prefill_tokens
            + self.c2 * decode_requests
            + self.c3 * decode_context_tokens
            + self.c4 * prefill_attention
        )

    def prefill_time(self, prompt: int, budget: int) -> float:
        """An idle replica's time to prefill ``prompt`` tokens in chunks of at most ``budget``."""
        total, done = 0.0, 0
        while done < prompt:
            c = min(budget, prompt - done)
            total += float(self.time(c, 0, 0, c * (done + c / 2)))
            done += c
        return total


@dataclass(frozen=True)
class IterationTable:
    r"""The replica model's exact iteration time, laid out so a simulator pays a lookup per batch.

    τ (:mod:`planner.perf.model`) is a sum of terms that each depend on one feature of the batch:
        p·τ = T_tok[n] + T_seq[s] + T_0 + a₂·Σc² + a₁·Σc + a_kc·Σk·c + a_k·Σ_{c>0} k + a_C·ΣC
    n = prefill tokens + decodes (rows of every layer GEMM, element-wise op, all-reduce and stage
    hop: the only non-linear part, tabulated at every integer n), s = sequences (LM-head rows and
    per-sequence host time, tabulated), T_0 = host time per iteration + the attention kernels'
    latency, and the attention kernel's terms, linear in its features: causal self-attention of
    each chunk (c², c), each chunk against its k cached tokens (k·c, k) and the decodes against
    their Σ C context tokens. A batch with several prefill chunks sums their attention work under
    one kernel latency (vLLM launches one varlen attention kernel per layer). With one chunk the
    sum is :meth:`~planner.perf.model.ReplicaModel.iteration_time` exactly (to float rounding; tests and
    ``benchmarks/iteration_fidelity.py`` check it on dense grids), so the simulator's iteration times
    are the performance model's, not a fit of it. All figures are seconds through all p stages."""

    token_s: np.ndarray  # [n], n = 0 … max(budget, max_num_seqs) + max_num_seqs
    seq_s: np.ndarray  # [s], s = 0 … max_num_seqs + 1
    const_s: float
    chunk_sq_s: float  # per Σ c²
    chunk_s: float  # per Σ c
    cached_chunk_s: float  # per Σ k·c
    cached_s: float  # per Σ k over chunks
    context_s: float  # per Σ C over decodes
    budget: int  # max_num_batched_tokens the table was built for
    _prefill_memo: dict[int, float] = field(default_factory=dict, repr=False, compare=False)

    def _prefill_scalar(self, prompt: int) -> float:
        """:meth:`prefill_time` of one prompt in plain floats (the same closed form)."""
        b = self.budget
        n, rest = divmod(prompt, b)
        seq1, t0 = float(self.seq_s[1]), self.const_s
        kc, k = self.cached_chunk_s, self.cached_s

        def chunk(c: int, cached: float) -> float:
            return (
                float(self.token_s[c]) + seq1 + t0 + self.chunk_sq_s * c * c + self.chunk_s * c + (kc * c + k) * cached
            )

        total = n * chunk(b, 0.0) + (kc * b + k) * b * n * (n - 1) / 2.0 if n else 0.0
        return total + (chunk(rest, float(n * b)) if rest else 0.0)

    def time(
        self,
        tokens: np.ndarray | int,
        seqs: np.ndarray | int,
        chunk_sq: np.ndarray | float = 0.0,
        chunk_tok: np.ndarray | float = 0.0,
        cached_chunk: np.ndarray | float = 0.0,
        cached: np.ndarray | float = 0.0,
        context: np.ndarray | float = 0.0,
    ) -> np.ndarray | float:
        """p·τ of a batch given its features (``tokens`` n and ``seqs`` s are integers)."""
        return (
            self.token_s[tokens]
            + self.seq_s[seqs]
            + self.const_s
            + self.chunk_sq_s * chunk_sq
            + self.chunk_s * chunk_tok
            + self.cached_chunk_s * cached_chunk
            + self.cached_s * cached
            + self.context_s * context
        )

    @functools.cached_property
    def decode_base_s(self) -> np.ndarray:
        """T_tok[D] + T_seq[D] + T_0 for D = 0 … max_num_seqs + 1 (the placement policies' hot path)."""
        n = len(self.seq_s)
        return self.token_s[:n] + self.seq_s + self.const_s

    def decode_time(self, decodes: np.ndarray | int, context: np.ndarray | float) -> np.ndarray | float:
        """A pure-decode iteration of ``decodes`` requests whose contexts sum to ``context`` tokens."""
        return self.decode_base_s[decodes] + self.context_s * context

    def chunk_time(self, chunk: np.ndarray | int, cached: np.ndarray | float) -> np.ndarray | float:
        """One prefill chunk of ``chunk`` tokens over ``cached`` cached ones, alone in its iteration."""
        c = np.asarray(chunk)
        return (
            self.token_s[c]
            + self.seq_s[1]
            + self.const_s
            + self.chunk_sq_s * c * c
            + self.chunk_s * c
            + (self.cached_chunk_s * c + self.cached_s) * cached
        )

    def idle_request(self, prompt: np.ndarray, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(TTFT, decode time after the first token) of requests alone on an idle engine: the
        chunked prefill, then O − 1 single-decode steps at contexts I + 1 … I + O − 1."""
        steps = np.maximum(np.asarray(output) - 1, 0)
        prompt = np.asarray(prompt)
        ttft = np.asarray(self.prefill_time(prompt), float)
        dec = steps * self.decode_time(1, 0.0) + self.context_s * (steps * prompt + steps * (steps + 1) / 2.0)
        return ttft, dec

    def prefill_time(self, prompt: np.ndarray | int) -> np.ndarray | float:
        """An idle engine's time to prefill ``prompt`` tokens in chunks of at most ``budget``, in closed
        form: n full chunks (chunk j sees j·B cached tokens) and a remainder over n·B."""
        if isinstance(prompt, int):  # the router asks per request: memoised, plain floats
            hit = self._prefill_memo.get(prompt)
            if hit is None:
                hit = self._prefill_memo[prompt] = self._prefill_scalar(prompt)
            return hit
        p = np.asarray(prompt, np.int64)
        b = self.budget
        n, rest = p // b, p % b
        tri = b * n * (n - 1) / 2.0  # Σ_j j·B over the full chunks
        full = n * self.chunk_time(b, 0.0) + (self.cached_chunk_s * b + self.cached_s) * tri
        last = np.where(rest > 0, self.chunk_time(rest, n * b), 0.0)
        out = full + last
        return float(out) if out.ndim == 0 else out
