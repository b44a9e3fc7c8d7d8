"""Demand from traffic: arrival rate and request lengths per query type and time window.

:func:`demand_from_trace` turns a request stream (a :class:`~planner.sim.traces.Trace`, sorted by
arrival) into one :class:`WindowDemand` row per (window, query type).

Windows
    Window ``k`` is ``[start_s + k·window_s, start_s + (k+1)·window_s)``. ``start_s`` defaults to
    0.0, the trace's own clock zero (the trace readers make arrivals relative to the first row, and
    ``TraceOptions.start_s`` to the start of the selected range). Every (window, type) pair is
    present, zero rows included, so downstream code gets a full grid.
The last window
    kept with its true length. Without ``end_s`` the trace ends at its last arrival (of any
    type, mapped or not): the last row's ``end_s`` is that arrival's time, and its rate divides by
    the length it covers, so a trace that stops mid-window does not look like a trough. When the
    last arrival falls exactly on a window boundary it closes the window before (whose end it is)
    instead of opening an empty zero-length one. With ``end_s`` the grid runs to ``end_s`` (the
    last window ends there and is right-closed) and arrivals past it are counted in ``outside``.
    A very short last window has a noisy rate: :meth:`Demand.peak` ignores partial windows.
Types
    the order of ``type_ids``; requests whose type is None are counted in ``Demand.unmapped``.
Lengths
    per window and type the mean and the 90th percentile (numpy's linear interpolation) of the
    input and output token counts; 0.0 (and rate 0) for a window with no request of the type.
Memory
    requests stream through; only the open window's token counts are held (plus one counter of
    distinct lengths per type for the whole-trace p90, which grows with distinct values only).

CSV (``write_csv`` / ``read_demand_csv``): the columns of :data:`COLUMNS`, one row per (window,
type) in window-major order; ``start_s``/``end_s`` with 6 decimals (µs), the other floats with 6
significant digits. ``arrival_rate`` is what planning reads: it is not checked against
``requests`` / length, so a hand-scaled file is accepted.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planner.errors import InputError
from planner.fileio import atomic_writer
from planner.review.figures import FiguresBuilder

COLUMNS = (
    "window", "start_s", "end_s", "query_type", "requests", "arrival_rate",
    "input_mean", "input_p90", "output_mean", "output_p90",
)  # fmt: skip
"""Columns of the demand CSV, in order."""

MAX_WINDOWS = 100_000
"""More windows than this is a mistake (a window of milliseconds, or timestamps in the wrong unit)."""

_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_WINDOW_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
_FULL_TOL = 1e-9  # relative: a window this close to window_s is full
_TIME_TOL = 2e-6  # s: times are written with 6 decimals


def parse_window(text: str | float) -> float:
    """``"15m"``, ``"5min"``, ``"900s"``, ``"1h"``, ``"1d"`` or a plain number of seconds → seconds."""
    m = _WINDOW_RE.fullmatch(str(text).lower()) if not isinstance(text, bool) else None
    if m is None or m.group(2) not in _UNITS:
        raise InputError(None, "--window", f"{text!r}: expected a length such as 15m, 5min, 900s, 1h or 30 (seconds)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value > 0 or not math.isfinite(value):
        raise InputError(None, "--window", f"{text!r}: must be longer than 0 s")
    return value


@dataclass(frozen=True)
class WindowDemand:
    """Demand of one query type in one window. Rates in requests/s, lengths in tokens."""

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

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Demand:
    """A full grid of :class:`WindowDemand` rows, window-major, types in ``type_ids`` order.

    ``unmapped`` counts requests no type took; ``outside`` those before ``start_s`` or after
    ``end_s``. ``window_s`` is the nominal window length (only the last window may be shorter).
    """

    type_ids: list[str]
    window_s: float
    rows: list[WindowDemand]
    unmapped: int = 0
    outside: int = 0
    # whole-trace length counters per type: (input, output) {tokens: requests}; None when read from CSV
    lengths: dict[str, tuple[Counter[int], Counter[int]]] | None = field(default=None, repr=False, compare=False)
    # (hit tokens, prompt tokens) per row of an ideal prefix cache (:func:`measure_prefix`); None: not measured
    prefix: list[tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.type_ids = list(self.type_ids)
        n_types = len(self.type_ids)
        if n_types == 0 or len(set(self.type_ids)) != n_types:
            raise ValueError(f"type_ids must be non-empty and unique, got {self.type_ids!r}")
        if len(self.rows) % n_types:
            raise ValueError(f"{len(self.rows)} rows do not fill a grid of {n_types} types")
        for k, r in enumerate(self.rows):
            if r.window != k // n_types or r.query_type != self.type_ids[k % n_types]:
                raise ValueError(f"row {k} is ({r.window}, {r.query_type}): rows must be window-major in type order")

    @property
    def windows(self) -> int:
        """Number of windows."""
        return len(self.rows) // len(self.type_ids)

    def bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(start_s, end_s) per window."""
        first = self.rows[:: len(self.type_ids)]
        return np.array([r.start_s for r in first]), np.array([r.end_s for r in first])

    def lengths_s(self) -> NDArray[np.float64]:
        """Length of each window in seconds (the last may be short)."""
        start, end = self.bounds()
        return end - start

    def full(self) -> NDArray[np.bool_]:
        """Which windows are a whole ``window_s`` long."""
        return self.lengths_s() >= self.window_s * (1 - _FULL_TOL)

    def _matrix(self, name: str, dtype: Any = np.float64) -> NDArray[Any]:
        values = np.array([getattr(r, name) for r in self.rows], dtype=dtype)
        return values.reshape(self.windows, len(self.type_ids))

    def rate_matrix(self) -> NDArray[np.float64]:
        """``arrival_rate`` as a windows × types array (types in ``type_ids`` order)."""
        return self._matrix("arrival_rate")

    def count_matrix(self) -> NDArray[np.int64]:
        """``requests`` as a windows × types array."""
        return self._matrix("requests", np.int64)

    def peak(self, full_only: bool = True) -> dict[str, float]:
        """Highest window rate per type. ``full_only``: over whole windows only (a short last window
        is noisy), unless no window is whole."""
        m = self.rate_matrix()
        mask = self.full() if full_only else np.ones(self.windows, dtype=bool)
        if not mask.any():
            mask[:] = True
        top = m[mask].max(axis=0) if self.windows else np.zeros(len(self.type_ids))
        return {t: float(v) for t, v in zip(self.type_ids, top, strict=True)}

    def mean_rates(self) -> dict[str, float]:
        """Time-weighted mean rate per type: requests over the whole covered span (not the mean of
        window rates, which would over-weight a short last window)."""
        span = float(self.lengths_s().sum())
        totals = self.count_matrix().sum(axis=0)
        return {t: float(n) / span if span > 0 else 0.0 for t, n in zip(self.type_ids, totals, strict=True)}

    def type_stats(self) -> dict[str, dict[str, Any]]:
        """Per type: requests, peak and mean rate, request-weighted mean lengths and the whole-trace
        p90 lengths (None when the demand was read from a CSV, which keeps per-window p90s only)."""
        counts = self.count_matrix()
        peak, mean = self.peak(), self.mean_rates()
        out: dict[str, dict[str, Any]] = {}
        for i, t in enumerate(self.type_ids):
            n = int(counts[:, i].sum())
            stats: dict[str, Any] = {"requests": n, "peak_rate": peak[t], "mean_rate": mean[t]}
            for kind in ("input", "output"):
                means = self._matrix(f"{kind}_mean")[:, i]
                stats[f"{kind}_mean"] = float(counts[:, i] @ means) / n if n else 0.0
                hist = None if self.lengths is None else self.lengths[t][0 if kind == "input" else 1]
                stats[f"{kind}_p90"] = None if hist is None else _hist_quantile(hist, 0.9)
            out[t] = stats
        return out

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame with the CSV's columns."""
        import pandas as pd

        frame = pd.DataFrame([r.__dict__ for r in self.rows], columns=list(COLUMNS))
        return frame.astype({"window": "int64", "requests": "int64"})

    def write_csv(self, path: str | Path) -> None:
        """Write the rows atomically (see the module docstring for the format)."""
        prefix = self.prefix
        with atomic_writer(path) as fh:
            fh.write(",".join(COLUMNS) + (",prefix_hit_ratio" if prefix is not None else "") + "\n")
            for k, r in enumerate(self.rows):
                values = (r.arrival_rate, r.input_mean, r.input_p90, r.output_mean, r.output_p90)
                extra = ""
                if prefix is not None:  # token-weighted; empty for a window without prompts of the type
                    hit, total = prefix[k]
                    extra = "," + (_num(hit / total) if total else "")
                fh.write(
                    f"{r.window},{_time(r.start_s)},{_time(r.end_s)},{r.query_type},{r.requests},"
                    + ",".join(_num(v) for v in values)
                    + extra
                    + "\n"
                )

    def prefix_ratios(self) -> dict[str, float | None]:
        """Token-weighted prefix-hit ratio per type over the whole trace (None: not measured or no prompts)."""
        if self.prefix is None:
            return {t: None for t in self.type_ids}
        n = len(self.type_ids)
        out: dict[str, float | None] = {}
        for j, t in enumerate(self.type_ids):
            hit = sum(h for h, _ in self.prefix[j::n])
            total = sum(p for _, p in self.prefix[j::n])
            out[t] = hit / total if total else None
        return out


def _time(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _num(x: float) -> str:
    s = f"{x:.6g}"
    return "0" if s == "-0" else s


def _hist_quantile(hist: Counter[int], q: float) -> float:
    """numpy's linear-interpolation quantile of the values a {value: count} counter describes."""
    if not hist:
        return 0.0
    values = np.array(sorted(hist), dtype=np.float64)
    cum = np.cumsum([hist[int(v)] for v in values])
    h = q * (int(cum[-1]) - 1)
    lo = math.floor(h)
    below = values[np.searchsorted(cum, lo, "right")]
    above = values[np.searchsorted(cum, min(lo + 1, int(cum[-1]) - 1), "right")]
    return float(below + (h - lo) * (above - below))


# --------------------------------------------------------------------------------------------
# From a trace
# --------------------------------------------------------------------------------------------


class _Builder:
    """The open window's token counts; finished windows become rows."""

    def __init__(self, type_ids: list[str], window_s: float, start_s: float) -> None:
        self.type_ids = type_ids
        self.window_s = window_s
        self.start_s = start_s
        self.rows: list[WindowDemand] = []
        self.open = 0  # index of the open window
        self.ins: list[list[int]] = [[] for _ in type_ids]
        self.outs: list[list[int]] = [[] for _ in type_ids]
        self.lengths = {t: (Counter[int](), Counter[int]()) for t in type_ids}

    def edge(self, k: int) -> float:
        """Start of window k, computed one way everywhere so neighbours share their boundary exactly."""
        return self.start_s + k * self.window_s

    def index(self, t: float) -> int:
        """The window holding t (t >= start_s), consistent with :meth:`edge` despite rounding."""
        k = int((t - self.start_s) // self.window_s)
        if k >= MAX_WINDOWS:  # refuse before the loops below: far out, k + 1 may not move the edge
            self.advance(k)
        while self.edge(k + 1) <= t:
            k += 1
        while k > 0 and self.edge(k) > t:
            k -= 1
        return k

    def add(self, col: int | None, n_in: int, n_out: int) -> None:
        if col is not None:
            self.ins[col].append(n_in)
            self.outs[col].append(n_out)

    def close(self, end: float) -> None:
        """Finish the open window, ending at ``end``, and open the next."""
        k, start = self.open, self.edge(self.open)
        length = end - start
        for col, t in enumerate(self.type_ids):
            count = len(self.ins[col])
            stats: list[float] = []
            for values, counter in ((self.ins[col], self.lengths[t][0]), (self.outs[col], self.lengths[t][1])):
                if values:
                    a = np.asarray(values, dtype=np.int64)
                    stats += [float(a.mean()), float(np.percentile(a, 90))]
                    v, c = np.unique(a, return_counts=True)
                    counter.update(dict(zip(v.tolist(), c.tolist(), strict=True)))
                    values.clear()
                else:
                    stats += [0.0, 0.0]
            self.rows.append(WindowDemand(k, start, end, t, count, count / length, *stats))
        self.open += 1

    def advance(self, k: int) -> None:
        """Close whole windows until window k is the open one."""
        if k >= MAX_WINDOWS:
            raise InputError(
                None,
                "--window",
                f"more than {MAX_WINDOWS:,} windows of {self.window_s:g} s: use a longer window "
                "(or check the trace's time unit)",
            )
        while self.open < k:
            self.close(self.edge(self.open + 1))


def demand_from_trace(
    requests: Iterable[Any],
    type_of: Callable[[Any], str | None],
    type_ids: list[str],
    window_s: float,
    start_s: float | None = None,
    end_s: float | None = None,
    figures: FiguresBuilder | None = None,
) -> Demand:
    """Stream ``requests`` (TraceRequest-like: ``arrival_s``, ``input_tokens``, ``output_tokens``;
    sorted by arrival) into per-window, per-type demand; see the module docstring for the windows.

    Raises :class:`InputError` for a bad window, arrivals out of order, a ``type_of`` result that is
    not in ``type_ids``, or (without ``end_s``) no request in range or no time span at all.
    ``figures``, when given, is fed every mapped request in range (:mod:`planner.review.figures`).
    """
    ids = list(type_ids)
    if not ids or len(set(ids)) != len(ids):
        raise InputError(None, "type_ids", f"must be a non-empty list of distinct query types, got {ids!r}")
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not 0 < window_s < math.inf:
        raise InputError(None, "window_s", f"must be a positive number of seconds, got {window_s!r}")
    s0 = 0.0 if start_s is None else float(start_s)
    if not math.isfinite(s0):
        raise InputError(None, "start_s", f"must be a finite number, got {start_s!r}")
    if end_s is not None and not s0 < end_s < math.inf:
        raise InputError(None, "end_s", f"must be a number after start_s {s0:g}, got {end_s!r}")
    col = {t: i for i, t in enumerate(ids)}
    b = _Builder(ids, float(window_s), s0)
    last_k: int | None = None  # with end_s: the last window
    if end_s is not None:
        k = b.index(end_s)
        last_k = k - 1 if k > 0 and b.edge(k) >= end_s else k
        if last_k >= MAX_WINDOWS:
            b.advance(last_k)  # raises
    unmapped = outside = 0
    prev: float | None = None  # last arrival, in range or not
    last_in: float | None = None  # last arrival in range
    held: list[tuple[int | None, int, int]] = []  # arrivals exactly on the boundary that opens window held_k
    held_k = 0
    for r in requests:
        t = float(r.arrival_s)
        if prev is not None and t < prev:
            where = f"line {r.line}" if hasattr(r, "line") else "arrival_s"
            raise InputError(
                getattr(r, "source", None), where, f"arrivals must be in time order: {t:.6f} s after {prev:.6f} s"
            )
        prev = t
        if t < s0 or (end_s is not None and t > end_s):
            outside += 1
            continue
        last_in = t
        qt = type_of(r)
        c = None if qt is None else col.get(qt)
        if qt is None:
            unmapped += 1
        elif c is None:
            raise InputError(None, "type_of", f"returned {qt!r}, not one of the query types {', '.join(ids)}")
        item = (c, int(r.input_tokens), int(r.output_tokens))
        if figures is not None and qt is not None:
            figures.add(qt, t, item[1], item[2])
        k = b.index(t)
        if last_k is not None and k > last_k:  # t == end_s on a boundary: the last window is right-closed
            k = last_k
        if held:
            if t == b.edge(held_k):
                held.append(item)
                continue
            b.advance(held_k)  # a later arrival follows: the held ones open window held_k after all
            for h in held:
                b.add(*h)
            held.clear()
        if last_k is None and k > b.open and t == b.edge(k):
            held_k = k  # the trace may end here; then this instant closes window k - 1
            held.append(item)
            continue
        b.advance(k)
        b.add(*item)

    if last_k is not None:  # the grid runs to end_s
        assert end_s is not None
        b.advance(last_k)
        b.close(end_s)
    else:
        if last_in is None:
            raise InputError(None, "trace", "no requests in the time range: nothing to measure demand over")
        if held:  # the trace ends exactly on a boundary: the window before ends there, holding them
            b.advance(held_k - 1)
            for h in held:
                b.add(*h)
        if last_in <= b.edge(b.open):
            raise InputError(
                None, "trace", "every request arrives at the same instant: no time span to measure a rate over"
            )
        b.close(last_in)
    return Demand(ids, float(window_s), b.rows, unmapped, outside, b.lengths)


# --------------------------------------------------------------------------------------------
# Reading a demand CSV
# --------------------------------------------------------------------------------------------

_INT_COLUMNS = ("window", "requests")
_NONNEGATIVE = ("requests", "arrival_rate", "input_mean", "input_p90", "output_mean", "output_p90")


def _cell(label: str, line: int, column: str, text: str) -> float | int:
    where = f"line {line}, {column}"
    text = text.strip()
    if column in _INT_COLUMNS:
        if not re.fullmatch(r"\d+", text):
            raise InputError(label, where, f"must be a whole number >= 0, got {text!r}")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise InputError(label, where, f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InputError(label, where, f"must be a finite number, got {text!r}")
    if column in _NONNEGATIVE and value < 0:
        raise InputError(label, where, f"must be >= 0, got {text}")
    return value


def _read_rows(path: Path, label: str, type_ids: list[str] | None) -> list[tuple[int, WindowDemand]]:
    try:
        fh = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError(label, "-", "file not found") from None
    except IsADirectoryError:
        raise InputError(label, "-", "is a directory, not a file") from None
    except OSError as exc:
        raise InputError(label, "-", f"cannot read: {exc.strerror or exc}") from None
    out: list[tuple[int, WindowDemand]] = []
    seen: dict[tuple[int, str], int] = {}
    try:
        with fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise InputError(label, "line 1", f"empty file: expected the header {','.join(COLUMNS)}")
            names = [h.strip().lstrip("\ufeff") for h in header]
            for c in names:
                if names.count(c) > 1:
                    raise InputError(label, f"line 1, {c}", "column appears twice")
            for c in COLUMNS:
                if c not in names:
                    raise InputError(label, f"line 1, {c}", f"missing column; the header must have {','.join(COLUMNS)}")
            pos = [names.index(c) for c in COLUMNS]
            for cells in reader:
                line = reader.line_num
                if not cells or all(not x.strip() for x in cells):
                    continue
                if len(cells) != len(names):
                    raise InputError(label, f"line {line}", f"{len(cells)} fields, the header has {len(names)}")
                values: dict[str, Any] = {}
                for c, p in zip(COLUMNS, pos, strict=True):
                    values[c] = cells[p].strip() if c == "query_type" else _cell(label, line, c, cells[p])
                t = values["query_type"]
                if not t:
                    raise InputError(label, f"line {line}, query_type", "is empty")
                if type_ids is not None and t not in type_ids:
                    raise InputError(
                        label, f"line {line}, query_type", f"unknown query type {t!r}; expected {', '.join(type_ids)}"
                    )
                if values["end_s"] <= values["start_s"]:
                    raise InputError(label, f"line {line}, end_s", f"{values['end_s']} is not after start_s")
                key = (values["window"], t)
                if key in seen:
                    raise InputError(
                        label, f"line {line}", f"window {key[0]} has a second {t!r} row (first on line {seen[key]})"
                    )
                seen[key] = line
                out.append((line, WindowDemand(**values)))
    except UnicodeDecodeError:
        raise InputError(label, "-", "not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(label, f"line {reader.line_num}", f"not valid CSV: {exc}") from None
    if not out:
        raise InputError(label, "-", "no demand rows after the header")
    return out


def read_demand_csv(path: str | Path, type_ids: list[str] | None = None) -> Demand:
    """Read a demand CSV (as :meth:`Demand.write_csv` writes it) and check it is a full grid.

    Rows may come in any order; the result is window-major in ``type_ids`` order (default: the
    order types first appear). Errors name the file and ``line N, column``: a malformed or negative
    value, a missing column, an unknown query type (when ``type_ids`` is given), a (window, type)
    pair missing or repeated, window numbers with a hole, windows whose times leave a gap or
    overlap, rows of one window with different times, or a window of another length than the
    first (only the last may be shorter). Extra columns are ignored. ``unmapped`` reads as 0.
    """
    label = str(path)
    rows = _read_rows(Path(path), label, type_ids)
    types = list(type_ids) if type_ids is not None else list(dict.fromkeys(r.query_type for _, r in rows))
    by_window: dict[int, dict[str, tuple[int, WindowDemand]]] = {}
    for line, r in rows:
        by_window.setdefault(r.window, {})[r.query_type] = (line, r)
    n = max(by_window) + 1
    grid: list[WindowDemand] = []
    window_s = 0.0
    prev_end = 0.0
    for k in range(n):
        cells = by_window.get(k)
        if cells is None:
            after = min(w for w in by_window if w > k)
            raise InputError(
                label,
                f"line {min(line for line, _ in by_window[after].values())}, window",
                f"window {k} has no rows (windows must be numbered 0, 1, 2, ... without holes)",
            )
        first_line, first = min(cells.values(), key=lambda lr: lr[0])
        for t in types:
            if t not in cells:
                raise InputError(label, f"window {k}", f"no row for query type {t!r} (every window needs every type)")
        for line, r in cells.values():
            moved = abs(r.start_s - first.start_s) > _TIME_TOL
            if moved or abs(r.end_s - first.end_s) > _TIME_TOL:
                raise InputError(
                    label,
                    f"line {line}, {'start_s' if moved else 'end_s'}",
                    f"window {k} runs {r.start_s:g}-{r.end_s:g} here but {first.start_s:g}-{first.end_s:g} "
                    f"on line {first_line}",
                )
        length = first.end_s - first.start_s
        if k == 0:
            window_s = length
        else:
            if first.start_s > prev_end + _TIME_TOL:
                raise InputError(
                    label,
                    f"line {first_line}, start_s",
                    f"gap: window {k} starts at {first.start_s:g} s but window {k - 1} ends at {prev_end:g} s",
                )
            if first.start_s < prev_end - _TIME_TOL:
                raise InputError(
                    label,
                    f"line {first_line}, start_s",
                    f"overlap: window {k} starts at {first.start_s:g} s, before window {k - 1} ends ({prev_end:g} s)",
                )
            last = k == n - 1
            if abs(length - window_s) > _TIME_TOL and not (last and length < window_s):
                raise InputError(
                    label,
                    f"line {first_line}, end_s",
                    f"window {k} is {length:g} s long but the windows are {window_s:g} s "
                    "(only the last may be shorter)",
                )
        prev_end = first.end_s
        grid.extend(cells[t][1] for t in types)
    return Demand(types, window_s, grid)


def measure_prefix(
    demand: Demand,
    requests: Iterable[tuple[float, str | None, int, tuple[int, ...] | None]],
    capacity: int | None,
) -> Demand:
    """``demand`` with the prefix-hit ratio an ideal cache reaches per (window, type).

    ``requests``: ``(arrival s, query type or None, input tokens, prefix-block ids or None)`` in
    arrival order, the same stream the demand was measured on. One LRU cache of ``capacity``
    tokens (None: unbounded) per query type — a type's deployments may serve another model than
    the next type's, so only reuse within the type counts — fed in arrival order
    (:class:`planner.sim.prefix.PrefixCache`); hits are token-weighted and counted in the window of
    the request that makes them. The cache is ideal: every request of the type reaches it, as with
    one replica or a router with perfect prefix affinity whose replicas' free KV sums to
    ``capacity``. Requests without ids never hit.
    """
    from planner.sim.prefix import PrefixCache

    n = len(demand.type_ids)
    col = {t: j for j, t in enumerate(demand.type_ids)}
    starts = np.array([demand.rows[k * n].start_s for k in range(demand.windows)])
    caches = [PrefixCache(capacity) for _ in range(n)]
    acc = [[0, 0] for _ in demand.rows]
    for t, qt, inp, hashes in requests:
        j = col.get(qt) if qt is not None else None
        if j is None:
            continue
        k = int(np.searchsorted(starts, t, side="right")) - 1
        if not 0 <= k < demand.windows:
            continue
        cell = acc[k * n + j]
        cell[1] += inp
        if hashes:
            cell[0] += caches[j].match(hashes, inp)
            caches[j].insert(hashes, inp)
    return replace(demand, prefix=[(h, p) for h, p in acc])


CURVE_TOKENS = (100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000)


def measure_prefix_curve(
    type_ids: list[str],
    requests: Iterable[tuple[float, str | None, int, tuple[int, ...] | None]],
    sizes: tuple[int, ...] = CURVE_TOKENS,
) -> dict[str, tuple[float, tuple[tuple[int, float], ...]]]:
    """Per type, the token-weighted prefix-hit ratio of an ideal unbounded cache and of ideal LRU
    caches of ``sizes`` tokens over the whole stream (the instance keys ``prefix_hit_ratio`` and
    ``prefix_hit_curve``, :mod:`planner.capacity`'s ``prefix_hit``), one pass; types without ids
    are left out. The curve stops at the first size that reaches the unbounded ratio."""
    from planner.sim.prefix import PrefixCache

    caps: list[int | None] = [None, *sizes]
    caches = {t: [PrefixCache(c) for c in caps] for t in type_ids}
    hits = {t: [0] * len(caps) for t in type_ids}
    tokens = dict.fromkeys(type_ids, 0)
    with_ids: set[str] = set()
    for _, qt, inp, hashes in requests:
        if qt is None or qt not in caches:
            continue
        tokens[qt] += inp
        if not hashes:
            continue
        with_ids.add(qt)
        for k, cache in enumerate(caches[qt]):
            hits[qt][k] += cache.match(hashes, inp)
            cache.insert(hashes, inp)
    out: dict[str, tuple[float, tuple[tuple[int, float], ...]]] = {}
    for t in type_ids:
        if t not in with_ids or tokens[t] == 0:
            continue
        ratios = [h / tokens[t] for h in hits[t]]
        curve: list[tuple[int, float]] = []
        for size, r in zip(sizes, ratios[1:], strict=True):
            curve.append((size, r))
            if r >= ratios[0] - 1e-12:
                break
        out[t] = (ratios[0], tuple(curve))
    return out
