"""What every ``planner`` command shares: its two streams, its exit codes, and how bad input ends it.

The command group (:mod:`planner.cli`) and each feature's commands (``planner/*/cli.py``,
registered through :data:`planner.cli.EXTENSIONS`) import these from here, so no feature imports
the command group back. README, "Command-line conventions".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from planner.errors import InputError
from planner.fileio import JSON_SUFFIXES, YAML_SUFFIXES, check_writable

EXIT_OK, EXIT_VIOLATIONS, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C

# Piped output gets a fixed, wide layout instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 400)
T = TypeVar("T")


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; bad input becomes one line on stderr and exit code 2."""
    from planner.executor import FanOutError

    try:
        return fn()
    except InputError as exc:
        err.print(f"error: {exc.line()}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INPUT) from None
    except FanOutError as exc:  # tasks that failed twice, by name: a failure, not bad input
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def output_path(path: Path | None, option: str, suffixes: tuple[str, ...] = YAML_SUFFIXES + JSON_SUFFIXES) -> None:
    """Refuse an output path before any work is done, so a bad one never costs a solve."""
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise InputError(str(path), option, f"output must end in {' or '.join(suffixes)}")
    check_writable(path, option)  # a directory, a path under a file, a read-only directory
