"""Fan-out of independent tasks: in this process, a local process pool, or a Ray cluster.

Every step of the planner that is embarrassingly parallel — the pools of a replay (independent
once routing is fixed), the capacities a solve simulates, the shards of a long trace, the runs of
a benchmark — hands its tasks to one :class:`Executor`:

    results = current().map(fn, args, names)

``fn`` is a module-level function (pickled by reference; Ray ships it by value) and each task's
argument carries everything it depends on, seeds included, so a result does not depend on where
or in which order it ran: the three executors return the same values, in the order of ``args``.

- :class:`InProcess` runs them one after the other (tests; nested fan-outs inside a worker).
- :class:`LocalPool` forks ``workers`` processes (the default, one per CPU).
- :class:`RayExecutor` submits them to Ray (``--ray ADDRESS``: ``auto`` starts a local cluster,
  anything else is passed to ``ray.init(address=...)``). Ray is an optional extra
  (``pip install 'planner[ray]'``); nothing else imports it.

A task that raises is run once more; if it fails again the others still finish, and then
:class:`FanOutError` names every failed task with its error and carries the results of the rest
(``None`` where a task failed), so a caller can report what it has. Progress goes to an optional
callback, one call per finished task (:func:`planner.progress` draws it on a terminal).

The executor in force is a context variable (:func:`use`); a worker process always runs its own
nested fan-outs in process, so a pool never forks pools.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int, int, str], None]  # (finished, total, name of the task that finished)

RETRIES = 1  # a failed task runs once more before it is reported


@dataclass
class Failure:
    name: str
    error: str  # the exception's type and message (its traceback in ``detail``)
    detail: str = ""


class FanOutError(RuntimeError):
    """Some tasks failed twice; ``results`` holds the others' (None where one failed)."""

    def __init__(self, failures: list[Failure], results: list[Any]) -> None:
        self.failures = failures
        self.results = results
        names = ", ".join(f"{f.name} ({f.error})" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {len(results)} tasks failed twice: {names}{more}")


@dataclass
class _Outcome:
    ok: bool
    value: Any = None
    error: str = ""
    detail: str = ""


def _call(fn: Callable[[Any], Any], arg: Any) -> _Outcome:
    """Run one task and wrap what it returned or raised (a worker never dies of a task's error)."""
    try:
        return _Outcome(True, fn(arg))
    except Exception as exc:  # reported by name to the caller
        return _Outcome(False, None, f"{type(exc).__name__}: {exc}", traceback.format_exc())


@dataclass
class _Book:
    """Results by index, attempts, failures, and the progress callback."""

    names: list[str]
    progress: Progress | None
    results: list[Any] = field(default_factory=list)
    tries: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    done: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.names)
        self.tries = [0] * len(self.names)

    def settle(self, i: int, out: _Outcome) -> bool:
        """Record task i's outcome; True when it should run again."""
        self.tries[i] += 1
        if not out.ok and self.tries[i] <= RETRIES:
            return True
        if out.ok:
            self.results[i] = out.value
        else:
            self.failures.append(Failure(self.names[i], out.error, out.detail))
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.names), self.names[i])
        return False

    def finish(self) -> list[Any]:
        if self.failures:
            order = {n: k for k, n in enumerate(self.names)}
            self.failures.sort(key=lambda f: order.get(f.name, 0))
            raise FanOutError(self.failures, self.results)
        return self.results


class Executor(ABC):
    """Runs independent tasks (module docstring)."""

    name: str = ""
    workers: int = 1

    def map(
        self,
        fn: Callable[[Any], Any],
        args: Sequence[Any],
        names: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> list[Any]:
        """``[fn(a) for a in args]``, run by this executor; ``names`` label the tasks in progress
        and failures (default ``task 0``, ``task 1``, …)."""
        labels = [str(n) for n in names] if names is not None else [f"task {k}" for k in range(len(args))]
        if len(labels) != len(args):
            raise ValueError("names and args differ in length")
        book = _Book(labels, progress)
        if args:
            self._run(fn, list(args), book)
        return book.finish()

    @abstractmethod
    def _run(self, fn: Callable[[Any], Any], args: list[Any], book: _Book) -> None: ...

    def describe(self) -> str:
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"


class InProcess(Executor):
    name = "in-process"

    def _run(self, fn: Callable[[Any], Any], args: list[Any], book: _Book) -> None:
        for i, a in enumerate(args):
            while book.settle(i, _call(fn, a)):
                pass


def _worker_init() -> None:
    # A worker's own fan-outs (a solve inside a bench run simulating its capacities) stay in it.
    _CURRENT.set(InProcess())
    os.environ["PLANNER_IN_WORKER"] = "1"


class LocalPool(Executor):
    """``workers`` forked processes (fork: the parent's imports and caches come for free)."""

    name = "process pool"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))

    def _run(self, fn: Callable[[Any], Any], args: list[Any], book: _Book) -> None:
        if self.workers == 1 or len(args) == 1:
            InProcess()._run(fn, args, book)
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

        ex = ProcessPoolExecutor(
            max_workers=min(self.workers, len(args)),
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_init,
        )
        try:
            live: dict[Future[_Outcome], int] = {ex.submit(_call, fn, a): i for i, a in enumerate(args)}
            while live:
                finished, _ = wait(live, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = live.pop(fut)
                    try:
                        out = fut.result()
                    except Exception as exc:  # the worker process died (killed, out of memory)
                        out = _Outcome(False, None, f"worker lost: {type(exc).__name__}: {exc}")
                    if book.settle(i, out):
                        try:
                            live[ex.submit(_call, fn, args[i])] = i
                        except Exception as exc:  # a broken pool takes no more work
                            book.settle(i, _Outcome(False, None, f"worker lost: {type(exc).__name__}: {exc}"))
        except BaseException:  # Ctrl-C (or a failure of ours): drop the queued tasks instead of waiting
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown()


class RayExecutor(Executor):
    """Tasks as Ray remote functions (one CPU each) on the cluster at ``address`` (``auto``: a local
    cluster started here, with ``workers`` CPUs when given)."""

    name = "ray"

    def __init__(self, address: str = "auto", workers: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # the optional extra
            raise RuntimeError("--ray needs Ray: pip install 'planner[ray]'") from exc
        self.address = address
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            try:
                if address in ("auto", "local"):
                    if workers is not None:
                        kwargs["num_cpus"] = workers
                    ray.init(**kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except Exception as exc:  # an unreachable address, a cluster that would not start
                raise RuntimeError(f"Ray at {address!r}: {type(exc).__name__}: {exc}") from exc
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)

    def _run(self, fn: Callable[[Any], Any], args: list[Any], book: _Book) -> None:
        ray = self._ray
        fn_ref = ray.put(fn)
        live = {self._remote.remote(fn_ref, a): i for i, a in enumerate(args)}
        try:
            while live:
                ready, _ = ray.wait(list(live), num_returns=1)
                for ref in ready:
                    i = live.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # the worker died (node lost, OOM kill)
                        out = _Outcome(False, None, f"worker lost: {type(exc).__name__}: {exc}")
                    if book.settle(i, out):
                        live[self._remote.remote(fn_ref, args[i])] = i
        except BaseException:
            for ref in live:
                ray.cancel(ref, force=True)
            raise


def _ray_call(fn: Callable[[Any], Any], arg: Any) -> _Outcome:
    _CURRENT.set(InProcess())
    return _call(fn, arg)


_CURRENT: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("planner_executor", default=None)


def current(workers: int | None = None) -> Executor:
    """The executor in force: the one :func:`use` set, else a process pool over every CPU (in a
    worker process: in process). ``workers``: a caller's own count instead (:func:`make`)."""
    if workers is not None:
        return make(None, workers)
    ex = _CURRENT.get()
    if ex is not None:
        return ex
    if os.environ.get("PLANNER_IN_WORKER") == "1":
        return InProcess()
    return LocalPool()


@contextlib.contextmanager
def use(executor: Executor) -> Iterator[Executor]:
    """Run the block's fan-outs on ``executor``."""
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)


def make(ray: str | None = None, workers: int | None = None) -> Executor:
    """The executor a command's ``--ray ADDRESS`` / ``--workers N`` ask for: Ray when an address is
    given, else a process pool of ``workers`` (default every CPU; 1: in process)."""
    if ray:
        return RayExecutor(ray, workers)
    if workers is not None and workers <= 1:
        return InProcess()
    return LocalPool(workers)


def overhead(executor: Executor, tasks: int = 200) -> float:
    """Seconds per task of ``executor`` for a task that does nothing (its scheduling and transfer
    cost), measured over ``tasks`` tasks."""
    t0 = time.perf_counter()
    executor.map(_noop, list(range(tasks)))
    return (time.perf_counter() - t0) / tasks


def _noop(x: Any) -> Any:
    return x
