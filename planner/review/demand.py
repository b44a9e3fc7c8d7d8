"""Demand from traffic: arrival rate and length statistics per query type and time window.

Windows are aligned at the trace's own clock zero (the readers make arrivals relative to the
first row), each ``window_s`` long; every (window, type) pair is present, zero rows included, so
downstream code gets a full grid. The last window is cut at the last arrival: its rate divides by
the length it actually covers, so a trace ending mid-window does not look like a trough.
Requests stream through; only the current window's token counts are held.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.errors import InputError
from planner.fileio import atomic_writer

COLUMNS = (
    "window", "start_s", "end_s", "query_type", "requests", "arrival_rate",
    "input_mean", "input_p90", "output_mean", "output_p90",
)  # fmt: skip
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_window(text: str) -> float:
    """``15m``, ``5min``, ``900s``, ``1h`` or plain seconds → seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(text).lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise InputError(None, "--window", f"{text!r}: expected e.g. 15m, 5min, 900s, 1h")
    value = float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1.0)
    if value <= 0:
        raise InputError(None, "--window", "must be > 0")
    return value


@dataclass(frozen=True)
class WindowDemand:
    window: int
    start_s: float
    end_s: float
    query_type: str
    requests: int
    arrival_rate: float
    input_mean: float
    input_p90: float
    output_mean: float
    output_p90: float


@dataclass
class Demand:
    type_ids: list[str]
    window_s: float
    rows: list[WindowDemand] = field(default_factory=list)
    unmapped: int = 0

    @property
    def windows(self) -> int:
        return len(self.rows) // max(len(self.type_ids), 1)

    def rate_matrix(self) -> np.ndarray:
        """arrival_rate as windows × types."""
        m = np.zeros((self.windows, len(self.type_ids)))
        col = {t: i for i, t in enumerate(self.type_ids)}
        for r in self.rows:
            m[r.window, col[r.query_type]] = r.arrival_rate
        return m

    def peak(self) -> dict[str, float]:
        m = self.rate_matrix()
        return {t: float(m[:, i].max()) if len(m) else 0.0 for i, t in enumerate(self.type_ids)}

    def mean_rates(self) -> dict[str, float]:
        total = {t: 0 for t in self.type_ids}
        span = 0.0
        for r in self.rows:
            total[r.query_type] += r.requests
        if self.rows:
            span = max(r.end_s for r in self.rows) - min(r.start_s for r in self.rows)
        return {t: total[t] / span if span > 0 else 0.0 for t in self.type_ids}

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows], columns=list(COLUMNS))

    def write_csv(self, path: str | Path) -> None:
        with atomic_writer(path) as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for r in self.rows:
                w.writerow([r.window, _f(r.start_s), _f(r.end_s), r.query_type, r.requests, _f(r.arrival_rate),
                            _f(r.input_mean), _f(r.input_p90), _f(r.output_mean), _f(r.output_p90)])  # fmt: skip


def _f(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def demand_from_trace(
    requests: Iterable[Any],
    type_of: Callable[[Any], str | None],
    type_ids: list[str],
    window_s: float,
) -> Demand:
    """Stream ``requests`` (TraceRequest, sorted by arrival) into per-window, per-type demand."""
    out = Demand(list(type_ids), window_s)
    col = {t: i for i, t in enumerate(type_ids)}
    cur = -1
    ins: list[list[int]] = [[] for _ in type_ids]
    outs: list[list[int]] = [[] for _ in type_ids]
    last = 0.0

    def flush(w: int, end: float) -> None:
        start = w * window_s
        length = max(end - start, 1e-9)
        for i, t in enumerate(type_ids):
            a, b = np.asarray(ins[i], float), np.asarray(outs[i], float)
            n = len(a)
            out.rows.append(
                WindowDemand(
                    w, start, end, t, n, n / length,
                    float(a.mean()) if n else 0.0, float(np.percentile(a, 90)) if n else 0.0,
                    float(b.mean()) if n else 0.0, float(np.percentile(b, 90)) if n else 0.0,
                )
            )  # fmt: skip
            ins[i].clear()
            outs[i].clear()

    for r in requests:
        w = int(r.arrival_s // window_s)
        while cur < w:
            if cur >= 0:
                flush(cur, (cur + 1) * window_s)
            cur += 1
        last = r.arrival_s
        t = type_of(r)
        if t is None:
            out.unmapped += 1
            continue
        ins[col[t]].append(r.input_tokens)
        outs[col[t]].append(r.output_tokens)
    if cur >= 0:
        flush(cur, max(last, cur * window_s + 1e-9) if last < (cur + 1) * window_s else (cur + 1) * window_s)
    return out


def read_demand_csv(path: str | Path, type_ids: list[str] | None = None) -> Demand:
    """A ``planner demand`` CSV back into a :class:`Demand`, validated row by row."""
    p = Path(path)
    label = str(path)
    try:
        fh = p.open(newline="")
    except OSError as exc:
        raise InputError(label, "-", f"cannot read: {exc.strerror}") from None
    rows: list[WindowDemand] = []
    with fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(label, "header", f"missing column(s): {', '.join(missing)}")
        for n, raw in enumerate(reader, start=2):
            try:
                vals = {c: raw[c] for c in COLUMNS}
                row = WindowDemand(
                    int(vals["window"]), float(vals["start_s"]), float(vals["end_s"]), vals["query_type"],
                    int(vals["requests"]), float(vals["arrival_rate"]), float(vals["input_mean"]),
                    float(vals["input_p90"]), float(vals["output_mean"]), float(vals["output_p90"]),
                )  # fmt: skip
            except (TypeError, ValueError):
                raise InputError(label, f"line {n}", "a field is missing or not a number") from None
            if row.arrival_rate < 0 or row.requests < 0 or not math.isfinite(row.arrival_rate):
                raise InputError(label, f"line {n}", "arrival_rate and requests must be finite and >= 0")
            if row.end_s <= row.start_s:
                raise InputError(label, f"line {n}", "end_s must be after start_s")
            if type_ids is not None and row.query_type not in type_ids:
                raise InputError(label, f"line {n}", f"unknown query type {row.query_type!r}")
            rows.append(row)
    if not rows:
        raise InputError(label, "-", "no demand rows")
    types = list(dict.fromkeys(r.query_type for r in rows))
    spans = sorted({(r.window, r.start_s, r.end_s) for r in rows})
    if len({w for w, _, _ in spans}) != len(spans):
        raise InputError(label, "window", "one window has rows with different start_s/end_s")
    for (w0, _, e0), (w1, s1, _) in itertools.pairwise(spans):
        if w1 != w0 + 1 or abs(s1 - e0) > 1e-6:
            raise InputError(
                label, f"window {w1}", f"windows must be consecutive without gaps (ends {e0}, next starts {s1})"
            )
    window_s = spans[0][2] - spans[0][1]
    d = Demand(list(type_ids) if type_ids is not None else types, window_s, rows)
    return d
