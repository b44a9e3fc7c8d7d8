#!/usr/bin/env python3
"""Derive the query types of ``instances/azure-2023.yaml`` from the Azure LLM inference traces.

Reads ``AzureLLMInferenceTrace_conv.csv`` and ``AzureLLMInferenceTrace_code.csv`` (Azure
Public Dataset, 2023 sample, CC-BY 4.0; Patel et al., Splitwise, ISCA 2024) and prints, per query
type, the figures the instance uses:

* arrival rate = rows / span, span = last TIMESTAMP - first TIMESTAMP of the *whole trace* the
  type comes from (so the conv buckets' rates add up to the conv rate);
* mean input (ContextTokens) and output (GeneratedTokens) tokens, their p10 / p50 / p90 / p99, min
  and max;
* the slow load figures (arrival_rate_slow_p90/p99 over 5-minute windows, token-weighted, and
  arrival_slow_length_share), as planner demand --figures measures them.

Types: ``conv`` and ``code`` (whole traces), and ``conv-short`` / ``conv-long``: conv split at
``ContextTokens <= --split`` (default 1024) vs above.

Usage (from the repo root)::

    python benchmarks/derive_azure_instance.py [--data ../shared/data/azure] [--split 1024]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FILES = {"conv": "AzureLLMInferenceTrace_conv.csv", "code": "AzureLLMInferenceTrace_code.csv"}


def read_trace(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    # TIMESTAMP has 7 fractional digits; pandas parses nanoseconds, so no truncation is needed.
    df["TIMESTAMP"] = pd.to_datetime(df["TIMESTAMP"], format="%Y-%m-%d %H:%M:%S.%f")
    return df


def span_seconds(df: pd.DataFrame) -> float:
    return (df["TIMESTAMP"].max() - df["TIMESTAMP"].min()).total_seconds()


WINDOW_S = 10.0  # the instance's arrival_window_s: the burst scale of arrival_rate_p90/p99


def window_rates(part: pd.DataFrame, start: pd.Timestamp, span_s: float) -> np.ndarray:
    """Requests per second in consecutive WINDOW_S windows covering the trace's whole span."""
    t = (part["TIMESTAMP"] - start).dt.total_seconds().to_numpy()
    n = int(np.ceil(span_s / WINDOW_S))
    return np.bincount(np.minimum((t // WINDOW_S).astype(int), n - 1), minlength=n) / WINDOW_S


SLOW_S = 300.0  # the instance's arrival_slow_window_s


def slow_figures(t_s: np.ndarray, tokens: np.ndarray, n_windows: int, window_s: float) -> dict[str, float]:
    """arrival_rate_slow_p90/p99 and arrival_slow_length_share (planner.review.figures.slow_load,
    what planner demand --figures writes) from arrival offsets and tokens per request."""
    from planner.review.figures import slow_load

    k = np.minimum((t_s // window_s).astype(int), n_windows - 1)
    counts = np.bincount(k, minlength=n_windows).astype(float)
    tok = np.bincount(k, weights=tokens.astype(float), minlength=n_windows)
    load, beta = slow_load(counts, tok, window_s, max(1, round(SLOW_S / window_s)))
    if load is None:
        return {}
    out = {"slow_p90": float(np.quantile(load, 0.9)), "slow_p99": float(np.quantile(load, 0.99))}
    return out | ({"slow_share": beta} if beta is not None else {})


def describe(name: str, part: pd.DataFrame, span_s: float, start: pd.Timestamp) -> dict[str, float | int | str]:
    inp, out = part["ContextTokens"], part["GeneratedTokens"]
    rates = window_rates(part, start, span_s)
    t = (part["TIMESTAMP"] - start).dt.total_seconds().to_numpy()
    slow = slow_figures(t, (inp + out).to_numpy(), int(np.ceil(span_s / WINDOW_S)), WINDOW_S)
    return slow | {
        "in_min": inp.min(),
        "in_max": inp.max(),
        "out_min": out.min(),
        "out_max": out.max(),
        "type": name,
        "rows": len(part),
        "span_s": round(span_s, 1),
        "rate_rps": len(part) / span_s,
        "in_mean": inp.mean(),
        "in_p10": inp.quantile(0.1),
        "in_p50": inp.quantile(0.5),
        "in_p90": inp.quantile(0.9),
        "in_p99": inp.quantile(0.99),
        "out_mean": out.mean(),
        "out_p10": out.quantile(0.1),
        "out_p50": out.quantile(0.5),
        "out_p90": out.quantile(0.9),
        "out_p99": out.quantile(0.99),
        "rate_p90": float(np.quantile(rates, 0.9)),
        "rate_p99": float(np.quantile(rates, 0.99)),
        "length_corr": length_correlation(inp, out),
        "in_table": length_table(inp),
        "out_table": length_table(out),
    }


def length_table(lengths: pd.Series) -> list[list[float]]:
    """The ``*_tokens_percentiles`` knots (planner.review.figures.TABLE_PERCENTILES, pandas'
    linear interpolation, as planner demand --figures measures them)."""
    from planner.review.figures import TABLE_PERCENTILES

    return [[p, float(lengths.quantile(p / 100.0))] for p in TABLE_PERCENTILES]


def length_correlation(inp: pd.Series, out: pd.Series) -> float:
    """The instance's ``length_correlation`` (planner.review.figures.length_correlation: the
    Gaussian copula parameter planner.capacity draws (prompt, output) pairs with)."""
    from planner.review.figures import length_correlation as measured

    return measured(inp.to_numpy(), out.to_numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/azure", help="directory holding the two CSVs")
    ap.add_argument("--split", type=int, default=1024, help="conv-short: ContextTokens <= this")
    args = ap.parse_args()
    data = Path(args.data)

    conv = read_trace(data / FILES["conv"])
    code = read_trace(data / FILES["code"])
    conv_span, code_span = span_seconds(conv), span_seconds(code)
    short = conv[conv["ContextTokens"] <= args.split]
    long_ = conv[conv["ContextTokens"] > args.split]

    c0, k0 = conv["TIMESTAMP"].min(), code["TIMESTAMP"].min()
    rows = [
        describe("conv", conv, conv_span, c0),
        describe("code", code, code_span, k0),
        describe("conv-short", short, conv_span, c0),
        describe("conv-long", long_, conv_span, c0),
    ]
    table = pd.DataFrame(rows).set_index("type")
    pd.set_option("display.width", 200)
    print(f"data: {data.resolve()}")
    print(f"conv span {conv['TIMESTAMP'].min()} -> {conv['TIMESTAMP'].max()} ({conv_span:.1f} s)")
    print(f"code span {code['TIMESTAMP'].min()} -> {code['TIMESTAMP'].max()} ({code_span:.1f} s)")
    print(
        f"conv split at ContextTokens <= {args.split}: {len(short)} short, {len(long_)} long "
        f"({len(short) / len(conv):.1%} short)"
    )
    print()
    print(
        table.round(
            {"rate_rps": 3, "in_mean": 1, "out_mean": 1, "in_p50": 0, "in_p90": 0, "in_p99": 0}
            | {"out_p50": 0, "out_p90": 0, "out_p99": 0}
        ).to_string()
    )
    print()
    print("# query_types figures (arrival_rate rounded to 3 decimals, tokens to integers; the")
    print("# percentiles feed the attainment capacity model's length distributions, planner/lengths.py):")
    print_query_types(rows)


def print_query_types(rows: list[dict[str, float | int | str]], comments: list[str] | None = None) -> None:
    """The rows as YAML query_type entries (rate, burst and length percentiles); also used by
    derive_mooncake_instance.py."""
    for n, r in enumerate(rows):
        note = f"    # {comments[n]}" if comments else ""
        print(f"  - id: {r['type']}{note}\n    arrival_rate: {r['rate_rps']:.3f}")
        print(f"    arrival_rate_p90: {r['rate_p90']:.3f}\n    arrival_rate_p99: {r['rate_p99']:.3f}")
        if "slow_p90" in r:
            print(f"    arrival_rate_slow_p90: {r['slow_p90']:.3f}\n    arrival_rate_slow_p99: {r['slow_p99']:.3f}")
        if "slow_share" in r:
            print(f"    arrival_slow_length_share: {float(r['slow_share']):.2f}")
        if "length_corr" in r:
            print(f"    length_correlation: {float(r['length_corr']):.2f}")
        for side, key in (("in", "input_tokens"), ("out", "output_tokens")):
            print(f"    {key}: {round(float(r[side + '_mean']))}")
            for p in ("p10", "p50", "p90", "p99", "min", "max"):
                if f"{side}_{p}" in r:
                    print(f"    {key}_{p}: {round(float(r[f'{side}_{p}']))}")
            if f"{side}_table" in r:
                knots = ", ".join(f"[{p:g}, {max(1, round(v))}]" for p, v in r[f"{side}_table"])  # type: ignore[union-attr]
                print(f"    {key}_percentiles: [{knots}]")


if __name__ == "__main__":
    main()
