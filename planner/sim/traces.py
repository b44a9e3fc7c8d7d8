"""Request traces for the trace-driven simulator: read, window, rescale, merge, synthesise, write.

Formats, detected from the header line or from JSON lines (``TraceOptions.format`` forces one):

* ``azure``: ``TIMESTAMP,ContextTokens,GeneratedTokens``, TIMESTAMP a date-time (7 fractional
  digits in the 2023 traces), made relative to the file's first row;
* ``splitwise`` (alias ``vidur``): ``arrived_at,num_prefill_tokens,num_decode_tokens``, seconds;
* ``mooncake``: JSON lines ``{"timestamp": ms, "input_length": .., "output_length": .., ...}``
  (``hash_ids`` is ignored).

Files are read in blocks of :data:`BLOCK` lines, so memory stays flat however long the trace is.
A block is parsed with pandas and checked with numpy; only a block with a problem is re-read line
by line, to name the bad line (or skip it with ``skip_bad``). Good rows before a bad line are
handed on first, so a ``limit`` or window that ends before the bad line never sees it.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
import re
import zlib
from calendar import timegm
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from planner.errors import InputError
from planner.fileio import atomic_writer

BLOCK = 65_536
"""Lines parsed at a time (and synthetic requests generated at a time)."""

BACKWARDS_TOLERANCE_S = 1e-3
"""Arrivals may step back this much (clock jitter) and are then clamped to keep the stream sorted."""

# Beyond these a value is a typo or a corrupt file, not a request: token counts are held as
# int64 (10^23 once overflowed the conversion) and a prompt of 10^8 tokens is ten times the
# longest context of any catalog model; an arrival 10^11 s (3,000 years) into the trace once made
# `planner demand` count 10^305 windows and never finish.
MAX_TOKENS = 100_000_000
MAX_ARRIVAL_S = 1e11

FORMATS = ("azure", "splitwise", "mooncake")
_ALIASES = {"vidur": "splitwise", "jsonl": "mooncake"}
_HEADERS: dict[str, tuple[str, str, str]] = {
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "splitwise": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
}
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
_SPLITWISE_HEADER = ",".join(_HEADERS["splitwise"]) + "\n"

# numpy arrays of one block: arrival on the file's own clock (s), input, output (may be 0), line.
_Block = tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]
# One emitted request before it gets its merged index: (arrival, file order, line, input, output).
_Row = tuple[float, int, int, int, int]


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request. ``line`` points back into the file so a surprising request can be looked up."""

    arrival_s: float
    input_tokens: int
    output_tokens: int
    source: str
    index: int
    line: int


@dataclass(frozen=True)
class TraceOptions:
    """How to read a trace. The window is on the file's own clock; scaling applies after it.

    ``time_scale`` compresses time (arrival / time_scale: rate × time_scale, same requests);
    ``rate_scale`` keeps the span and thins (< 1) or replicates (> 1) requests, seeded by
    ``seed`` and the file's stem so merged files get independent draws. Emitted arrivals are
    ``(t − start_s) / time_scale``, so a windowed trace starts near 0. ``limit`` caps the requests
    emitted per file.
    """

    format: str | None = None
    time_scale: float = 1.0
    rate_scale: float = 1.0
    start_s: float = 0.0
    duration_s: float | None = None
    limit: int | None = None
    skip_bad: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format is not None and _ALIASES.get(self.format, self.format) not in FORMATS:
            raise InputError(None, "format", f"unknown trace format {self.format!r}; use one of {', '.join(FORMATS)}")
        for name in ("time_scale", "rate_scale"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise InputError(None, name, f"must be a positive number, got {value!r}")
        if not _is_number(self.start_s) or not math.isfinite(self.start_s) or self.start_s < 0:
            raise InputError(None, "start_s", f"must be a number >= 0, got {self.start_s!r}")
        d = self.duration_s
        if d is not None and (not _is_number(d) or not math.isfinite(d) or d <= 0):
            raise InputError(None, "duration_s", f"must be a positive number, got {d!r}")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 0):
            raise InputError(None, "limit", f"must be a whole number >= 0, got {self.limit!r}")
        if not _is_int(self.seed):
            raise InputError(None, "seed", f"must be a whole number, got {self.seed!r}")

    @property
    def resolved_format(self) -> str | None:
        return None if self.format is None else _ALIASES.get(self.format, self.format)


DEFAULT_OPTIONS = TraceOptions()


@dataclass
class TraceStats:
    """Counters filled while a trace is consumed.

    File-side counters (``rows_read``, ``skipped_bad``, ``zero_output``) advance a block at a time,
    so mid-stream they may run ahead of ``emitted``; after a full pass they are exact.
    ``zero_output`` counts in-window rows whose output was 0 (emitted with 1 output token).
    """

    rows_read: int = 0
    emitted: int = 0
    skipped_bad: int = 0
    zero_output: int = 0
    first_arrival_s: float | None = None
    last_arrival_s: float | None = None
    input_tokens_total: int = 0
    output_tokens_total: int = 0
    per_source: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class Trace:
    """One or more trace files merged in arrival order (ties: file order, then line).

    Iterating re-reads the files and resets :attr:`stats`; ``index`` counts the merged stream.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], options: TraceOptions = DEFAULT_OPTIONS) -> None:
        if isinstance(paths, str | Path):
            paths = [paths]
        self.paths: tuple[Path, ...] = tuple(Path(p) for p in paths)
        if not self.paths:
            raise InputError(None, "traces", "no trace files given")
        for p in self.paths:
            _check_file(p)
        self.options = options
        self.stats = TraceStats()
        self._complete = False

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(p.stem for p in self.paths)

    def __iter__(self) -> Iterator[TraceRequest]:
        self.stats = TraceStats()
        self._complete = False
        yield from self._iterate(self.stats)
        self._complete = True

    def _iterate(self, stats: TraceStats) -> Iterator[TraceRequest]:
        sources = self.sources
        streams = [_file_stream(p, self.options, stats, k) for k, p in enumerate(self.paths)]
        merged: Iterator[_Row] = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        per_source = stats.per_source
        for s in sources:
            per_source.setdefault(s, 0)
        for index, (arrival, k, line, n_in, n_out) in enumerate(merged):
            source = sources[k]
            if index == 0:
                stats.first_arrival_s = arrival
            stats.last_arrival_s = arrival
            stats.emitted = index + 1
            stats.input_tokens_total += n_in
            stats.output_tokens_total += n_out
            per_source[source] += 1
            yield TraceRequest(arrival, n_in, n_out, source, index, line)

    def summary(self) -> dict[str, Any]:
        """Counts, span, mean rate and mean lengths; reads the trace first unless a full pass was made."""
        if not self._complete:
            for _ in self:
                pass
        s = self.stats
        span = (s.last_arrival_s - s.first_arrival_s) if s.emitted else 0.0
        assert span is not None
        return {
            "files": [str(p) for p in self.paths],
            "requests": s.emitted,
            "per_source": dict(s.per_source),
            "rows_read": s.rows_read,
            "skipped_bad": s.skipped_bad,
            "zero_output": s.zero_output,
            "first_arrival_s": s.first_arrival_s,
            "last_arrival_s": s.last_arrival_s,
            "span_s": span,
            # requests / span, as the instance derivations compute a type's rate
            "mean_rate_rps": s.emitted / span if span > 0 else None,
            "input_tokens_mean": s.input_tokens_total / s.emitted if s.emitted else None,
            "output_tokens_mean": s.output_tokens_total / s.emitted if s.emitted else None,
        }


def read_trace(
    path: str | Path, options: TraceOptions = DEFAULT_OPTIONS, stats: TraceStats | None = None
) -> Iterator[TraceRequest]:
    """Stream one trace file; pass ``stats`` to watch its counters (or use :class:`Trace`)."""
    return Trace(path, options)._iterate(stats if stats is not None else TraceStats())


def _file_stream(path: Path, options: TraceOptions, stats: TraceStats, order: int) -> Iterator[_Row]:
    rng = np.random.default_rng([options.seed, zlib.crc32(path.stem.encode())])
    for arrivals, lines, inputs, outputs in _shape(_read_blocks(path, options, stats), options, rng, stats):
        yield from zip(arrivals, repeat(order), lines, inputs, outputs, strict=False)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(str(path), "-", "trace file not found")
    if not path.is_file():
        raise InputError(str(path), "-", "is not a file")


def _open(path: Path) -> TextIO:
    _check_file(path)
    try:
        # Undecodable bytes become U+FFFD, so they fail as a bad line with a line number.
        return open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(str(path), "-", f"cannot read: {exc.strerror or exc}") from None


def _detect(path: Path, first: str, forced: str | None) -> tuple[str, bool]:
    """The format and whether ``first`` is a header line."""
    head = first.lstrip("\ufeff").strip()
    fields = tuple(f.strip().lower() for f in head.split(","))
    detected = next((f for f, h in _HEADERS.items() if fields == tuple(c.lower() for c in h)), None)
    if forced is not None:
        if detected is not None and detected != forced:
            raise InputError(str(path), "line 1", f"the header is the {detected} format's, but format {forced} was set")
        return forced, detected is not None
    if detected is not None:
        return detected, True
    if head.startswith("{") or path.suffix.lower() in (".jsonl", ".json"):
        return "mooncake", False
    expected = " or ".join(repr(",".join(h)) for h in _HEADERS.values())
    raise InputError(
        str(path),
        "line 1",
        f"unknown trace format: first line {_short(head)}; expected a header {expected}, "
        "or JSON lines (Mooncake); or set the format",
    )


class _Bad(Exception):
    """A bad data line; the reader adds the file and line number."""


class _Clock:
    """Turns raw timestamps into the file's own clock and keeps it non-decreasing."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.origin_ns: int | None = None  # azure: the first good row's time
        self.prev: float | None = None  # own-clock arrival of the last good row

    def own(self, raw: NDArray[Any]) -> NDArray[np.float64]:
        if self.fmt != "azure":
            return raw.astype(np.float64)
        origin = self.origin_ns if self.origin_ns is not None else int(raw[0])
        return (raw - origin).astype(np.float64) / 1e9

    def monotone(self, t: NDArray[np.float64]) -> NDArray[np.float64] | None:
        """``t`` with sub-tolerance steps back clamped, or None if a row steps back further."""
        start = -math.inf if self.prev is None else self.prev
        before = np.maximum.accumulate(np.concatenate(([start], t)))[:-1]
        if np.any(t < before - BACKWARDS_TOLERANCE_S):
            return None
        return np.maximum(t, before)

    def commit(self, raw0: int | float, t_last: float) -> None:
        if self.fmt == "azure" and self.origin_ns is None:
            self.origin_ns = int(raw0)
        self.prev = t_last


def _read_blocks(path: Path, options: TraceOptions, stats: TraceStats) -> Iterator[_Block]:
    name = str(path)
    with _open(path) as fh:
        first = fh.readline()
        if not first.strip():
            raise InputError(name, "-", "empty trace: no data rows")
        fmt, header = _detect(path, first, options.resolved_format)
        lines: Iterator[str] = fh if header else chain([first], fh)
        line_no = 2 if header else 1
        clock = _Clock(fmt)
        good = 0
        while block := list(islice(lines, BLOCK)):
            fast = None if fmt == "mooncake" else _fast_csv(block, fmt)
            t = None if fast is None else clock.monotone(clock.own(fast[0]))
            if fast is not None and t is not None:
                clock.commit(fast[0][0], float(t[-1]))
                stats.rows_read += len(t)
                good += len(t)
                yield t, fast[1], fast[2], np.arange(line_no, line_no + len(t), dtype=np.int64)
            else:
                for part in _slow_block(block, line_no, fmt, clock, options.skip_bad, stats, name):
                    good += len(part[0])
                    yield part
            line_no += len(block)
        if good == 0:
            more = f" ({stats.skipped_bad} bad lines skipped)" if stats.skipped_bad else ""
            raise InputError(name, "-", f"empty trace: no data rows{more}")


def _fast_csv(block: list[str], fmt: str) -> tuple[NDArray[Any], NDArray[np.int64], NDArray[np.int64]] | None:
    """Raw times, inputs and outputs of a block with no problem at all, else None."""
    try:
        df = pd.read_csv(
            io.StringIO("".join(block)),
            header=None,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,
            dtype={0: str} if fmt == "azure" else None,
            engine="c",
        )
    except Exception:  # any parse problem: the slow path names the line
        return None
    if df.shape != (len(block), 3):
        return None
    tokens = []
    for col, minimum in ((1, 1), (2, 0)):
        v = df[col].to_numpy()
        if v.dtype.kind not in "iuf":
            return None
        v = v.astype(np.float64)
        if not (np.all(np.isfinite(v)) and np.all(v == np.floor(v)) and np.all((v >= minimum) & (v <= MAX_TOKENS))):
            return None
        tokens.append(v.astype(np.int64))
    if fmt == "azure":
        raw: NDArray[Any] | None = _azure_ns(df[0])
        if raw is None:
            return None
    else:
        raw = df[0].to_numpy()
        if raw.dtype.kind not in "iuf":
            return None
        raw = raw.astype(np.float64)
        limit = MAX_ARRIVAL_S * (1000.0 if fmt == "mooncake" else 1.0)
        if not (np.all(np.isfinite(raw)) and np.all((raw >= 0) & (raw <= limit))):
            return None
    return raw, tokens[0], tokens[1]


# Azure TIMESTAMP: fixed layout "YYYY-MM-DD HH:MM:SS.fffffff" (27 chars) on the fast path; anything
# ISO-like (the 2024 week-long traces: "+00:00", fraction sometimes missing) by the pattern below.
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\s*(Z|[+-]\d\d:?\d\d)?")
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, *range(20, 27)])
_SEPARATORS = {4: b"-", 7: b"-", 13: b":", 16: b":", 19: b"."}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _azure_ns(col: pd.Series) -> NDArray[np.int64] | None:
    """Nanoseconds since the epoch (naive times taken as UTC), or None if any row is off."""
    if col.isna().any():
        return None
    values = col.to_numpy(dtype=object)
    try:
        b = values.astype("S")
    except UnicodeEncodeError:
        return None
    if b.dtype.itemsize == 27:
        fixed = _fixed_layout_ns(b.view(np.uint8).reshape(-1, 27))
        if fixed is not None:
            return fixed
    # Not the fixed layout: let pandas parse, but only what the line-by-line pattern accepts too.
    if not col.astype(object).map(lambda s: _TS.fullmatch(s.strip()) is not None).all():
        return None
    try:
        ts = pd.to_datetime(col.str.strip(), format="ISO8601", utc=True)
    except (ValueError, OverflowError):
        return None
    return ts.dt.as_unit("ns").astype("int64").to_numpy()


def _fixed_layout_ns(u: NDArray[np.uint8]) -> NDArray[np.int64] | None:
    for pos, ch in _SEPARATORS.items():
        if not np.all(u[:, pos] == ord(ch)):
            return None
    if not np.all((u[:, 10] == ord(" ")) | (u[:, 10] == ord("T"))):
        return None
    d = u[:, _DIGITS].astype(np.int64) - ord("0")
    if np.any((d < 0) | (d > 9)):
        return None

    def num(a: int, b: int) -> NDArray[np.int64]:
        out = np.zeros(len(d), dtype=np.int64)
        for k in range(a, b):
            out = out * 10 + d[:, k]
        return out

    y, m, day, hh, mm, ss, frac = num(0, 4), num(4, 6), num(6, 8), num(8, 10), num(10, 12), num(12, 14), num(14, 21)
    if np.any((m < 1) | (m > 12) | (day < 1) | (hh > 23) | (mm > 59) | (ss > 59)):
        return None
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    if np.any(day > _DAYS_IN_MONTH[m - 1] + ((m == 2) & leap)):
        return None
    # days from the civil date (H. Hinnant's algorithm), valid for years >= 1
    yy = y - (m <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (days * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + frac * 100


def _slow_block(
    block: list[str], line_no: int, fmt: str, clock: _Clock, skip_bad: bool, stats: TraceStats, name: str
) -> Iterator[_Block]:
    """Line by line; good rows before a bad line are yielded before it raises (or is skipped)."""
    parse = _parse_mooncake if fmt == "mooncake" else (_parse_azure if fmt == "azure" else _parse_splitwise)
    ts: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    nums: list[int] = []

    def flush() -> Iterator[_Block]:
        if ts:
            stats.rows_read += len(ts)
            yield (
                np.array(ts, dtype=np.float64),
                np.array(ins, dtype=np.int64),
                np.array(outs, dtype=np.int64),
                np.array(nums, dtype=np.int64),
            )
            ts.clear(), ins.clear(), outs.clear(), nums.clear()

    for n, text in enumerate(block, start=line_no):
        if not text.strip():
            continue  # blank lines (a trailing newline) are not rows
        try:
            raw, n_in, n_out = parse(text.rstrip("\r\n"))
            if fmt == "azure":
                if clock.origin_ns is None:
                    clock.origin_ns = int(raw)
                t = (int(raw) - clock.origin_ns) / 1e9
            else:
                t = float(raw)
            if clock.prev is not None and t < clock.prev:
                if t < clock.prev - BACKWARDS_TOLERANCE_S:
                    raise _Bad(f"arrival goes back {clock.prev - t:.6g} s (more than 1 ms): {_short(text)}")
                t = clock.prev
        except _Bad as exc:
            yield from flush()
            if not skip_bad:
                raise InputError(name, f"line {n}", str(exc)) from None
            stats.rows_read += 1
            stats.skipped_bad += 1
            continue
        clock.prev = t
        ts.append(t), ins.append(n_in), outs.append(n_out), nums.append(n)
    yield from flush()


def _parse_azure(text: str) -> tuple[int, int, int]:
    parts = _split(text)
    m = _TS.fullmatch(parts[0].strip())
    if m is None:
        raise _Bad(f"TIMESTAMP {_short(parts[0])} is not a date-time like 2023-11-16 18:15:46.6805900")
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss))
    except ValueError as exc:
        raise _Bad(f"TIMESTAMP {_short(parts[0])}: {exc}") from None
    seconds = timegm(dt.timetuple())
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    ns = seconds * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    return ns, _tokens(parts[1], "ContextTokens", 1), _tokens(parts[2], "GeneratedTokens", 0)


def _parse_splitwise(text: str) -> tuple[float, int, int]:
    parts = _split(text)
    t = _number(parts[0], "arrived_at")
    if t < 0:
        raise _Bad(f"arrived_at {_short(parts[0])} is negative")
    if t > MAX_ARRIVAL_S:
        raise _Bad(f"arrived_at {_short(parts[0])} is beyond {MAX_ARRIVAL_S:g} s")
    return t, _tokens(parts[1], "num_prefill_tokens", 1), _tokens(parts[2], "num_decode_tokens", 0)


def _parse_mooncake(text: str) -> tuple[float, int, int]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not valid JSON ({exc.msg}): {_short(text)}") from None
    if not isinstance(obj, dict):
        raise _Bad(f"expected a JSON object: {_short(text)}")
    for key in _MOONCAKE_KEYS:
        if key not in obj:
            raise _Bad(f"missing key {key!r}: {_short(text)}")
    values = []
    for key in _MOONCAKE_KEYS:
        v = obj[key]
        if not _is_number(v):
            raise _Bad(f"{key} {_short(json.dumps(v))} is not a number")
        values.append(v)
    t_ms = _check_number(values[0], "timestamp", json.dumps(values[0]))
    if t_ms < 0:
        raise _Bad(f"timestamp {values[0]!r} is negative")
    if t_ms > MAX_ARRIVAL_S * 1000:
        raise _Bad(f"timestamp {values[0]!r} is beyond {MAX_ARRIVAL_S * 1000:g} ms")
    n_in = _whole(values[1], "input_length", 1, json.dumps(values[1]))
    n_out = _whole(values[2], "output_length", 0, json.dumps(values[2]))
    return t_ms / 1000.0, n_in, n_out


def _split(text: str) -> list[str]:
    parts = text.split(",")
    if len(parts) != 3:
        raise _Bad(f"expected 3 comma-separated fields, found {len(parts)}: {_short(text)}")
    return parts


def _number(field: str, column: str) -> float:
    try:
        v = float(field)
    except ValueError:
        raise _Bad(f"{column} {_short(field)} is not a number") from None
    return _check_number(v, column, field)


def _check_number(v: float, column: str, shown: str) -> float:
    if not math.isfinite(v):
        raise _Bad(f"{column} {_short(shown)} is not finite")
    return float(v)


def _tokens(field: str, column: str, minimum: int) -> int:
    return _whole(_number(field, column), column, minimum, field)


def _whole(v: float, column: str, minimum: int, shown: str) -> int:
    _check_number(v, column, shown)
    if v != math.floor(v):
        raise _Bad(f"{column} {_short(shown)} is not a whole number")
    if v < 0:
        raise _Bad(f"{column} {_short(shown)} is negative")
    if v < minimum:
        raise _Bad(f"{column} must be at least {minimum}, got {_short(shown)}")
    if v > MAX_TOKENS:
        raise _Bad(f"{column} {_short(shown)} is beyond {MAX_TOKENS:,} tokens")
    return int(v)


def _short(text: str, width: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= width else text[: width - 3] + "...")


# --------------------------------------------------------------------------------------------
# Window, rate and time scaling, limit
# --------------------------------------------------------------------------------------------


def _shape(
    blocks: Iterator[_Block], options: TraceOptions, rng: np.random.Generator, stats: TraceStats
) -> Iterator[tuple[list[float], list[int], list[int], list[int]]]:
    """Rows on the file's clock → emitted (arrival, line, input, output) lists, one block at a time.

    rate_scale > 1 spreads a row's copies evenly up to the next row's arrival, so the output stays
    sorted; that needs one row of lookahead, carried from block to block.
    """
    start = options.start_s
    end = None if options.duration_s is None else start + options.duration_s
    remaining = math.inf if options.limit is None else options.limit
    x = options.rate_scale
    whole, frac = math.floor(x), x - math.floor(x)
    spread = x > 1
    n_window = 0
    t_first = 0.0
    carry: tuple[NDArray[Any], ...] | None = None  # t, in, out, line, count of the last row (spread)

    def emit(
        t: NDArray[np.float64],
        n_in: NDArray[np.int64],
        n_out: NDArray[np.int64],
        line: NDArray[np.int64],
        count: NDArray[np.int64],
        nxt: NDArray[np.float64] | None,
    ) -> tuple[list[float], list[int], list[int], list[int]]:
        nonlocal remaining
        if nxt is None:  # counts are 0 or 1
            keep = count > 0
            times, n_in, n_out, line = t[keep], n_in[keep], n_out[keep], line[keep]
        else:
            src = np.repeat(np.arange(len(t)), count)
            within = np.arange(len(src)) - np.repeat(np.cumsum(count) - count, count)
            times = t[src] + within / count[src] * (nxt - t)[src]
            n_in, n_out, line = n_in[src], n_out[src], line[src]
        if len(times) > remaining:
            k = int(remaining)
            times, n_in, n_out, line = times[:k], n_in[:k], n_out[:k], line[:k]
        remaining -= len(times)
        arrivals = (times - start) / options.time_scale
        return arrivals.tolist(), line.tolist(), n_in.tolist(), n_out.tolist()

    if remaining <= 0:
        return
    ended = False
    for t, n_in, n_out, line in blocks:
        stop = len(t)
        if end is not None:
            stop = int(np.searchsorted(t, end, "left"))
            ended = stop < len(t)
        lo = int(np.searchsorted(t[:stop], start, "left")) if start > 0 else 0
        t, n_in, n_out, line = t[lo:stop], n_in[lo:stop], n_out[lo:stop], line[lo:stop]
        if len(t):
            zero = n_out == 0
            stats.zero_output += int(zero.sum())
            n_out = np.where(zero, 1, n_out)
            if n_window == 0:
                t_first = float(t[0])
            n_window += len(t)
            if x == 1:
                count = np.ones(len(t), dtype=np.int64)
            else:
                u = rng.random(len(t))
                count = (u < x).astype(np.int64) if x < 1 else whole + (u < frac).astype(np.int64)
            if not spread:
                out = emit(t, n_in, n_out, line, count, None)
            else:
                if carry is not None:
                    t, n_in, n_out, line, count = (
                        np.concatenate((c, a)) for c, a in zip(carry, (t, n_in, n_out, line, count), strict=True)
                    )
                nxt = np.append(t[1:], end if ended else np.nan)
                if ended:  # the next row is past the window end: spread up to the end
                    carry = None
                    out = emit(t, n_in, n_out, line, count, nxt)
                else:
                    carry = (t[-1:], n_in[-1:], n_out[-1:], line[-1:], count[-1:])
                    out = emit(t[:-1], n_in[:-1], n_out[:-1], line[:-1], count[:-1], nxt[:-1])
            if out[0]:
                yield out
            if remaining <= 0:
                return
        elif ended and carry is not None:
            assert end is not None
            yield emit(*carry, np.array([end], dtype=np.float64))
            carry = None
        if ended:
            return
    if carry is not None:  # end of file: the last row's copies span one mean inter-arrival
        t_last = float(carry[0][0])
        gap = (t_last - t_first) / (n_window - 1) if n_window > 1 else 0.0
        nxt_last = t_last + gap if end is None else min(t_last + gap, end)
        out = emit(*carry, np.array([nxt_last], dtype=np.float64))
        if out[0]:
            yield out


# --------------------------------------------------------------------------------------------
# Synthetic traces and writing
# --------------------------------------------------------------------------------------------


def synthetic_trace(
    n: int,
    rate: float,
    seed: int = 0,
    input_mean: float = 1155,
    input_sigma: float = 1.0,
    output_mean: float = 211,
    output_sigma: float = 1.0,
    max_input: int = 8192,
    max_output: int = 2048,
    source: str = "synthetic",
) -> Iterator[TraceRequest]:
    """Poisson arrivals and lognormal lengths (defaults: Azure conv means), generated in blocks.

    ``*_sigma`` is the lognormal shape; μ is set so the unclipped mean is ``*_mean``. Lengths are
    rounded and clipped to [1, max], which pulls the mean down a little for heavy tails. ``line``
    is the row the request would have in :func:`write_trace_csv`'s output.
    """
    if not _is_int(n) or n < 0:
        raise InputError(None, "n", f"must be a whole number >= 0, got {n!r}")
    checks = {"rate": rate, "input_mean": input_mean, "output_mean": output_mean}
    for name, v in checks.items():
        if not _is_number(v) or not math.isfinite(v) or v <= 0:
            raise InputError(None, name, f"must be a positive number, got {v!r}")
    for name, v in {"input_sigma": input_sigma, "output_sigma": output_sigma}.items():
        if not _is_number(v) or not math.isfinite(v) or v < 0:
            raise InputError(None, name, f"must be a number >= 0, got {v!r}")
    for name, v in {"max_input": max_input, "max_output": max_output}.items():
        if not _is_int(v) or v < 1:
            raise InputError(None, name, f"must be a whole number >= 1, got {v!r}")
    return _synthetic(n, rate, seed, input_mean, input_sigma, output_mean, output_sigma, max_input, max_output, source)


def _synthetic(
    n: int,
    rate: float,
    seed: int,
    input_mean: float,
    input_sigma: float,
    output_mean: float,
    output_sigma: float,
    max_input: int,
    max_output: int,
    source: str,
) -> Iterator[TraceRequest]:
    rng = np.random.default_rng(seed)
    mu_in = math.log(input_mean) - input_sigma**2 / 2
    mu_out = math.log(output_mean) - output_sigma**2 / 2
    t0 = 0.0
    for first in range(0, n, BLOCK):
        m = min(BLOCK, n - first)
        t = t0 + np.cumsum(rng.exponential(1.0 / rate, m))
        t0 = float(t[-1])
        n_in = np.clip(np.rint(rng.lognormal(mu_in, input_sigma, m)), 1, max_input).astype(np.int64)
        n_out = np.clip(np.rint(rng.lognormal(mu_out, output_sigma, m)), 1, max_output).astype(np.int64)
        idx = range(first, first + m)
        lines = range(first + 2, first + m + 2)
        yield from map(TraceRequest, t.tolist(), n_in.tolist(), n_out.tolist(), repeat(source), idx, lines)


def write_trace_csv(requests: Iterable[TraceRequest], path: str | Path) -> int:
    """Write the Splitwise format atomically, streaming in blocks; returns the number of rows."""
    rows = 0
    with atomic_writer(path) as fh:
        fh.write(_SPLITWISE_HEADER)
        it = iter(requests)
        while chunk := list(islice(it, BLOCK)):
            # repr: the shortest text that reads back as the same float
            fh.write("".join(f"{r.arrival_s!r},{r.input_tokens},{r.output_tokens}\n" for r in chunk))
            rows += len(chunk)
    return rows
