"""The simulation's JSON summary and its plots (latency CDFs, attainment per type, load over time).

Both read a finished replay through :class:`Replay`, the few fields a report needs, which
:class:`planner.sim.engine.Simulator` has: the report depends on no engine code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from planner.sim.metrics import Metrics
    from planner.sim.state import PoolSpec


class WorkerTotals(Protocol):
    """One worker's counters at the end of a replay."""

    busy_s: float
    peak_kv: int
    preemptions: int
    finished: int
    iterations: int


class PoolTotals(Protocol):
    """One pool's settings and its workers' counters, replica by replica (pp engines each)."""

    @property
    def spec(self) -> PoolSpec: ...

    @property
    def workers(self) -> Sequence[WorkerTotals]: ...


class RunSettings(Protocol):
    """The run's settings a report names."""

    policy: str
    staleness_s: float
    seed: int


class Replay(Protocol):
    """What a report reads of a finished replay."""

    metrics: Metrics
    slos: list[tuple[float, float, float]]  # (TTFT, TPOT, e2e) per query type
    now: float  # simulated time at the end
    placement_ns: np.ndarray  # placement decision times (a bounded sample)
    n_events: int
    preemptions: int
    prefix_hits: list[int]  # prompt tokens taken from prefix caches, per query type
    prefix_tokens: list[int]  # prompt tokens of the prefills looked up, per query type
    samples_t: list[float]  # load samples: times, then per pool one (2, workers) array per time
    samples: list[list[np.ndarray]]

    @property
    def config(self) -> RunSettings: ...

    @property
    def all_pools(self) -> Sequence[PoolTotals]: ...


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _dist(h: Any) -> dict[str, float | None]:
    return {
        "mean": _r(h.mean()),
        "p50": _r(h.quantile(0.5)),
        "p90": _r(h.quantile(0.9)),
        "p99": _r(h.quantile(0.99)),
        "max": _r(h.max if h.n else None),
    }


def summarize(sim: Replay) -> dict[str, Any]:
    m = sim.metrics
    types: dict[str, Any] = {}
    for k, (ty, st) in enumerate(zip(m.type_ids, m.types, strict=True)):
        if st.arrived == 0:
            continue
        looked = sim.prefix_tokens[k]
        served = st.arrived - st.rejected["unserved"]
        ttft, tpot, e2e = sim.slos[m.type_ids.index(ty)]
        types[ty] = {
            "arrived": st.arrived,
            "served": served,
            "finished": st.finished,
            "rejected": {k: v for k, v in st.rejected.items() if k != "unserved"},
            "unserved": st.rejected["unserved"],
            "attainment": _r(st.met / served, 6) if served else None,
            "ttft_attainment": _r(st.met_ttft / served, 6) if served else None,
            "tpot_attainment": _r(st.met_tpot / served, 6) if served else None,
            "e2e_attainment": _r(st.met_e2e / served, 6) if served else None,
            "preempted_requests": st.preempted,
            # token-weighted share of prefilled prompt tokens taken from a prefix cache
            "prefix_hit_ratio": _r(sim.prefix_hits[k] / looked, 6) if looked else None,
            "slo": {"ttft_s": _r(ttft), "tpot_s": _r(tpot), "e2e_s": _r(e2e)},
            "ttft_s": _dist(st.ttft),
            "tpot_s": _dist(st.tpot),
            "e2e_s": _dist(st.e2e),
        }
    served = sum(t["served"] for t in types.values())
    met = sum(st.met for st in m.types)
    pools = []
    horizon = max(sim.now, 1e-9)
    for pool in sim.all_pools:
        spec = pool.spec
        e = spec.engines_per_replica
        reps = []
        for k in range(spec.replicas):
            ws = pool.workers[k * e : (k + 1) * e]
            reps.append(
                {
                    "replica": k,
                    "utilization": _r(sum(w.busy_s for w in ws) / (e * horizon)),
                    "peak_kv": _r(max(w.peak_kv for w in ws) / spec.kv_capacity),
                    "preemptions": sum(w.preemptions for w in ws),
                    "finished": sum(w.finished for w in ws),
                    "iterations": sum(w.iterations for w in ws),
                }
            )
        pools.append(
            {
                "pool": spec.key,
                "role": spec.role,
                "replicas": spec.replicas,
                "gpus": spec.replicas * spec.gpus_per_replica,
                "kv_capacity_tokens": spec.kv_capacity * e,
                "max_num_seqs": spec.max_num_seqs,
                "max_model_len": spec.max_context,
                "iteration_time": {
                    "source": "performance model, exact (IterationTable)",
                    "token_budget": spec.timing.budget,
                    "idle_decode_step_s": float(spec.timing.decode_time(1, 0.0)),
                    "full_chunk_s": float(spec.timing.chunk_time(spec.timing.budget, 0.0)),
                },
                "utilization": _r(float(np.mean([r["utilization"] or 0.0 for r in reps]))),
                "peak_kv": _r(max(r["peak_kv"] or 0.0 for r in reps)),
                "preemptions": sum(r["preemptions"] for r in reps),
                "replica_stats": reps,
            }
        )
    pl = sim.placement_ns / 1e3
    return {
        "policy": sim.config.policy,
        "staleness_s": sim.config.staleness_s,
        "seed": sim.config.seed,
        "requests": m.total,
        "conservation": m.conservation(),
        "truncated_outputs": m.truncated,
        "simulated_s": _r(sim.now, 3),
        "attainment": _r(met / served, 6) if served else None,
        "gpus": sum(p["gpus"] for p in pools),
        "goodput_rps": _r(met / horizon),
        "types": types,
        "pools": pools,
        "placement_us": {
            "decisions": len(pl),
            "p50": _r(float(np.percentile(pl, 50)), 2) if len(pl) else None,
            "p99": _r(float(np.percentile(pl, 99)), 2) if len(pl) else None,
            "max": _r(float(pl.max()), 2) if len(pl) else None,
        },
        "events": sim.n_events,
        "preemptions": sim.preemptions,
    }


def plot(sim: Replay, out_dir: Path, stem: str = "sim") -> list[Path]:
    """Three PNGs: latency CDFs per type, attainment per type against the target, load over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from planner.fileio import write_atomic_bytes

    m = sim.metrics
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in zip(axes, ("ttft", "tpot", "e2e"), ("TTFT (s)", "TPOT (s)", "e2e (s)"), strict=True):
        for ty, st in zip(m.type_ids, m.types, strict=True):
            h = getattr(st, key)
            if h.n:
                x, y = h.cdf()
                ax.step(x, y, where="post", label=ty)
        for i in range(len(m.type_ids)):
            slo = sim.slos[i][("ttft", "tpot", "e2e").index(key)]
            if math.isfinite(slo) and m.types[i].arrived:
                ax.axvline(slo, ls=":", lw=0.8, color=f"C{i}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("share of requests ≤ x")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"latency CDFs ({sim.config.policy}); dotted: SLOs")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / f"{stem}-latency.png", write_atomic_bytes))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names, att = [], []
    for ty, st in zip(m.type_ids, m.types, strict=True):
        served = st.arrived - st.rejected["unserved"]
        if served:
            names.append(ty)
            att.append(st.met / served)
    ax.bar(names, att, color="C0")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("SLO attainment")
    for i, a in enumerate(att):
        ax.text(i, a, f"{a:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_title(f"attainment per query type ({sim.config.policy})")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / f"{stem}-attainment.png", write_atomic_bytes))
    plt.close(fig)

    fig, axes = plt.subplots(len(sim.all_pools), 1, figsize=(9, 2.6 * len(sim.all_pools)), squeeze=False)
    t = np.asarray(sim.samples_t)
    for ax, pool, samples in zip(axes[:, 0], sim.all_pools, sim.samples, strict=True):
        if not samples:
            continue
        arr = np.stack(samples)  # (time, 2, workers)
        e = pool.spec.engines_per_replica
        load = arr[:, 0, :].reshape(len(t), -1, e).sum(axis=2)
        for k in range(load.shape[1]):
            ax.plot(t, load[:, k], lw=0.7)
        ax.set_ylabel("requests")
        ax.set_title(f"{pool.spec.key}: requests queued or running per replica", fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / f"{stem}-load.png", write_atomic_bytes))
    plt.close(fig)
    return paths


def _save(fig: Any, path: Path, writer: Any) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    writer(path, buf.getvalue())
    return path
