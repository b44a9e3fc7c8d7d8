"""Progress of long commands: a live display on a terminal, nothing in pipes.

``bench`` (minutes), ``scale`` and ``review`` (tens of seconds), ``stress`` and ``solve`` with
``--validate`` show what they are doing on stderr, with the elapsed time, when stderr is a
terminal. Redirected or piped (a log, CI, a test's CliRunner), they print nothing extra: the
results alone, so a pipe or a log is the same whether the job took a second or an hour. The
display is transient: it is erased when the job ends, leaving the results on the screen.

    with progress("scaling", total=len(jobs)) as p:
        for job in jobs:
            p.update(f"{job.option} {job.policy}")
            ...
            p.advance()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    """A handle on the display: :meth:`update` says what runs now, :meth:`advance` counts a job."""

    def __init__(self, bar: Progress | None, task: TaskID | None, title: str) -> None:
        self._bar = bar
        self._task = task
        self._title = title

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, what: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"{self._title}: {what}" if what else self._title)

    def advance(self, n: float = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def task_done(self, done: int, total: int, name: str) -> None:
        """A fan-out's progress callback (:mod:`planner.executor`): task ``name`` finished, ``done``
        of ``total``."""
        self.total(total)
        self.update(f"{name} done")
        self.advance()

    def total(self, n: int) -> None:
        """Set the number of jobs once it is known (a bar needs ``total=`` at :func:`progress`)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=n)


def on_terminal() -> bool:
    """Whether stderr is a terminal (looked up now: tests and pipes replace it)."""
    return Console(stderr=True).is_terminal


@contextlib.contextmanager
def progress(title: str, total: int | None = None) -> Iterator[Steps]:
    """A spinner (or a bar over ``total`` jobs; 0 if set later) with the elapsed time, on stderr
    if it is a terminal."""
    if not on_terminal():
        yield Steps(None, None, title)
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=total)
        yield Steps(bar, task, title)
