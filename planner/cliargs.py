"""Validating command-line arguments up front, in one place.

Every command checks its arguments before it reads a big file or starts a solve, so a bad value
costs nothing and gets one line: ``error: --rate-scale: must be a finite number ...`` (exit 2).
The helpers here raise :class:`~planner.errors.InputError` with the option spelled as the user
typed it; :func:`planner.console.guard` turns that into the line.

:class:`OneLineGroup` does the same for the errors the argument parser itself raises (a value
that is not a number, out of a ``min=``/``max=`` range, a missing or unknown option): Typer's
default is a five-line usage box, the conventions promise one line.

Limits (why they are where they are):

* :data:`MAX_SECONDS` (10^7 s, ~116 days) for time limits: a larger value is a typo, and HiGHS
  and SCIP take the limit as a double that ``inf`` or ``nan`` would turn into "no limit" or an error.
* :data:`MAX_SEED` (2^32 − 1): numpy's and the solvers' seeds are unsigned 32-bit.
* :data:`MAX_SCALE`: ``--rate-scale`` replicates every request that many times (10^4 × a
  20k-request trace is already 2·10^8 requests); ``--time-scale`` of 10^-6 stretches a second
  into 11 days, below that arrivals overflow to infinity and the replay never ends.
* :data:`MAX_TOKENS` (10^7, the longest context any model serves today) for ``perf``'s token
  counts: a prefill is evaluated chunk by chunk (10^7 tokens take ~20 s), 10^11 never finished.
* :data:`MAX_BATCH` (10^6 requests) for ``perf --batch``: thousands of times vLLM's max_num_seqs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from planner.errors import InputError

try:  # Typer >= 0.20 vendors Click as typer._click; older releases use Click itself.
    from typer import _click as click
except ImportError:  # pragma: no cover - depends on the installed Typer
    import click  # type: ignore[no-redef]

MAX_SECONDS = 1e7
MAX_SEED = 2**32 - 1
MAX_SCALE = 1e4
MIN_TIME_SCALE = 1e-6
MAX_TOKENS = 10_000_000
MAX_BATCH = 1_000_000
MAX_DEGREE = 1024  # the instance's own limit on tp and pp (planner.problem.Degree)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def number(
    option: str,
    value: float | None,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> float | None:
    """``value`` if it is a finite number inside the bounds given (None passes: not given).

    NaN fails every comparison, so a plain ``value <= 0`` check lets it through; here it is
    refused first, with infinities, before any bound is compared.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(None, option, f"must be a finite number (got {_shown(value)})")
    if gt is not None and not value > gt:
        raise InputError(None, option, f"must be > {gt:g} (got {_shown(value)})")
    if ge is not None and not value >= ge:
        raise InputError(None, option, f"must be >= {ge:g} (got {_shown(value)})")
    if lt is not None and not value < lt:
        raise InputError(None, option, f"must be < {lt:g} (got {_shown(value)})")
    if le is not None and not value <= le:
        raise InputError(None, option, f"must be <= {le:g} (got {_shown(value)})")
    return value


def whole(option: str, value: int | None, *, ge: int | None = None, le: int | None = None) -> int | None:
    """``value`` if it is a whole number in [ge, le] (None passes)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(None, option, f"must be a whole number (got {_shown(value)})")
    if ge is not None and value < ge:
        raise InputError(None, option, f"must be >= {ge:,} (got {value:,})")
    if le is not None and value > le:
        raise InputError(None, option, f"must be <= {le:,} (got {value:,})")
    return value


def seed(option: str, value: int) -> int:
    """A random seed: numpy and the solvers take unsigned 32-bit seeds."""
    whole(option, value, ge=0, le=MAX_SEED)
    return value


def seconds(option: str, value: float | None) -> float | None:
    """A time limit in seconds: > 0 and at most :data:`MAX_SECONDS`."""
    return number(option, value, gt=0, le=MAX_SECONDS)


def number_list(option: str, text: str, *, gt: float | None = None, le: float | None = None) -> list[float]:
    """A comma-separated list of finite numbers (``--inflate 1.2,1.5``), each inside the bounds."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InputError(None, option, f"not a list of numbers: {text!r}")
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise InputError(None, option, f"{p!r} is not a number (in {text!r})") from None
        values.append(number(option, v, gt=gt, le=le))
    return [float(v) for v in values if v is not None]


def trace_window(
    *,
    rate_scale: float,
    time_scale: float,
    limit: int | None,
    start: float,
    duration: float | None,
    seed_value: int,
) -> None:
    """The trace options every trace-reading command shares (``simulate``, ``scale``, ``demand``,
    ``solve --validate``), checked under the names the user typed."""
    number("--rate-scale", rate_scale, gt=0, le=MAX_SCALE)
    number("--time-scale", time_scale, ge=MIN_TIME_SCALE, le=1 / MIN_TIME_SCALE)
    # --limit 0 would replay nothing and report attainment "None": refuse it instead.
    whole("--limit", limit, ge=1)
    number("--start", start, ge=0)
    number("--duration", duration, gt=0)
    seed("--seed", seed_value)


# --------------------------------------------------------------------------------------------
# Parser errors as one line
# --------------------------------------------------------------------------------------------


def _param_name(param: Any) -> str | None:
    """The parameter as the user typed it: ``--types`` for an option, ``INSTANCE`` for an argument."""
    if param is None:
        return None
    opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
    if opts:
        return max(opts, key=len)  # the long form when there is one
    name = getattr(param, "metavar", None) or getattr(param, "name", None)  # metavar: the usage's spelling
    return str(name).upper() if name else None


def usage_error_line(exc: Any) -> str:
    """One ``error:`` line for a parser error (no usage box, no "Try --help" footer)."""
    name = _param_name(getattr(exc, "param", None))
    if isinstance(exc, click.exceptions.MissingParameter):
        msg = "required" + (f": {exc.message}" if exc.message else "")
    elif isinstance(exc, click.exceptions.BadParameter):
        msg = exc.message
    else:
        name, msg = None, exc.format_message()
    line = f"error: {name}: {msg}" if name else f"error: {msg}"
    return " ".join(line.split())  # Click's messages may span lines; the convention is one


class OneLineGroup(TyperGroup):
    """The ``planner`` group: parser errors become one ``error:`` line on stderr, exit 2.

    Only the standalone entry point changes: it runs Click in non-standalone mode and reports
    what Click would have printed as a box. Help (``planner`` with no arguments) is still shown.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            sys.stderr.write(usage_error_line(exc) + "\n")
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        # Non-standalone Click returns the code of a typer.Exit, or the command's own value.
        sys.exit(rv if isinstance(rv, int) else 0)


MAX_WORKERS = 4096  # local processes or Ray tasks in flight; more is a typo

# The fan-out options every command with independent tasks takes (planner.executor).
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="parallel tasks on this machine (default: one per CPU; 1: in this process)"),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="run the parallel tasks on Ray ('auto' starts a local cluster; else ray.init's address)",
    ),
]


def executor(ray: str | None, workers: int | None) -> Any:
    """The :class:`planner.executor.Executor` of ``--ray ADDRESS`` / ``--workers N`` (checked:
    ``--workers`` a whole number in 1..4096; ``--ray`` needs the optional extra)."""
    from planner import executor as ex

    whole("--workers", workers, ge=1, le=MAX_WORKERS)
    if ray is not None and not ray.strip():
        raise InputError(None, "--ray", "give an address, or 'auto' to start a local Ray cluster")
    try:
        return ex.make(ray, workers)
    except RuntimeError as exc:  # Ray missing, or its cluster unreachable
        raise InputError(None, "--ray", str(exc)) from None
