#!/usr/bin/env python3
"""Derive the query types of ``instances/mooncake-2025.yaml`` from the Mooncake conversation trace.

Reads ``mooncake_conversation_trace.jsonl`` (Kimi production, one hour, 12,031 rows; JSONL with
``timestamp`` in ms from the start, ``input_length``, ``output_length``, ``hash_ids``;
kvcache-ai/Mooncake ``FAST25-release/traces/conversation_trace.jsonl``, Apache-2.0; Qin et al.,
Mooncake, FAST 2025) and prints, per query type, the figures the instance uses:

* arrival rate = rows / span, span = last timestamp - first timestamp of the *whole trace* (so the
  types' rates add up to the trace's rate);
* mean input (``input_length``) and output (``output_length``) tokens and their p50 / p90 / p99
  (pandas linear-interpolation quantiles);
* ``arrival_rate_p90`` / ``arrival_rate_p99``: the 90th / 99th percentile of the type's rate over
  consecutive ``--window``-second windows (default 10 s, the instance's ``arrival_window_s``)
  covering the whole span, from the first timestamp: requests in the window / window length.
  Windows where the type has no request count as rate 0.

Types split the trace by prompt length (inclusive upper bounds, ``--bounds``, default 8192 and
32768): ``chat-8k`` (input <= 8192), ``long-32k`` (8193..32768) and ``doc-128k`` (> 32768: only
models with a 128k context can serve it). The same split is the rule set of
``instances/mooncake-2025.traces.yml``.

Usage (from the repo root)::

    python benchmarks/derive_mooncake_instance.py [--data ../shared/data/traces] [--bounds 8192 32768]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from derive_azure_instance import length_correlation, length_table, print_query_types, slow_figures

FILE = "mooncake_conversation_trace.jsonl"
NAMES = ("chat-8k", "long-32k", "doc-128k")


def read_trace(path: Path) -> pd.DataFrame:
    df = pd.read_json(path, lines=True)
    df["t_s"] = df["timestamp"] / 1000.0
    return df


def window_rates(t_s: pd.Series, t0: float, n_windows: int, window_s: float) -> np.ndarray:
    """Requests per second in each of the n_windows consecutive windows [t0 + k·w, t0 + (k+1)·w)."""
    k = np.floor((t_s.to_numpy() - t0) / window_s).astype(int)
    return np.bincount(k, minlength=n_windows)[:n_windows] / window_s


def describe(name: str, part: pd.DataFrame, span_s: float, t0: float, n_windows: int, window_s: float) -> dict:
    inp, out = part["input_length"], part["output_length"]
    rates = window_rates(part["t_s"], t0, n_windows, window_s)
    slow = slow_figures((part["t_s"] - t0).to_numpy(), (inp + out).to_numpy(), n_windows, window_s)
    return slow | {
        "in_min": inp.min(),
        "out_min": out.min(),
        "type": name,
        "rows": len(part),
        "rate_rps": len(part) / span_s,
        "rate_p90": float(np.quantile(rates, 0.9)),
        "rate_p99": float(np.quantile(rates, 0.99)),
        "rate_max": float(rates.max()),
        "in_mean": inp.mean(),
        "in_p10": inp.quantile(0.1),
        "in_p50": inp.quantile(0.5),
        "in_p90": inp.quantile(0.9),
        "in_p99": inp.quantile(0.99),
        "in_max": inp.max(),
        "out_mean": out.mean(),
        "out_p10": out.quantile(0.1),
        "out_p50": out.quantile(0.5),
        "out_p90": out.quantile(0.9),
        "out_p99": out.quantile(0.99),
        "out_max": out.max(),
        "length_corr": length_correlation(inp, out),
        "in_table": length_table(inp),
        "out_table": length_table(out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/traces", help=f"directory holding {FILE}")
    ap.add_argument(
        "--bounds",
        type=int,
        nargs=2,
        default=(8192, 32768),
        metavar=("CHAT", "LONG"),
        help="inclusive upper input bounds of chat-8k and long-32k; doc-128k is the rest",
    )
    ap.add_argument("--window", type=float, default=10.0, help="window of arrival_rate_p90/p99, seconds")
    args = ap.parse_args()
    path = Path(args.data) / FILE
    b1, b2 = args.bounds

    df = read_trace(path)
    t0, t1 = df["t_s"].min(), df["t_s"].max()
    span = t1 - t0
    n_windows = max(math.ceil(span / args.window), 1)
    if np.floor((t1 - t0) / args.window) >= n_windows:  # the last arrival sits on a window edge
        n_windows += 1
    n = df["input_length"]
    parts = {
        NAMES[0]: df[n <= b1],
        NAMES[1]: df[(n > b1) & (n <= b2)],
        NAMES[2]: df[n > b2],
    }
    rows = [describe("all", df, span, t0, n_windows, args.window)]
    rows += [describe(k, p, span, t0, n_windows, args.window) for k, p in parts.items()]
    table = pd.DataFrame(rows).set_index("type")
    pd.set_option("display.width", 220)
    print(f"data: {path.resolve()}")
    print(f"{len(df)} rows, timestamps {t0:.3f} -> {t1:.3f} s (span {span:.3f} s, {len(df) / span:.3f} req/s)")
    print(f"{n_windows} windows of {args.window:g} s; split at input <= {b1} / <= {b2} / above:")
    print("  " + ", ".join(f"{k} {len(p)} ({len(p) / len(df):.1%})" for k, p in parts.items()))
    print()
    print(table.round(3).to_string())
    print()
    print("# query_types figures (arrival rates rounded to 3 decimals, tokens to integers):")
    print_query_types(rows[1:], [f"{r['rows']} of {len(df)} rows" for r in rows[1:]])


if __name__ == "__main__":
    main()
