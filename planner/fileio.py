"""Reading YAML/JSON documents and writing outputs atomically.

Outputs are written to a temporary file in the target directory and renamed into place, so a
reader never sees a half-written plan and a failed or interrupted run leaves nothing behind: an
output that existed before is kept byte for byte until the new one is whole.

Modes: a new file gets ``0o666 & ~umask`` (what ``open()`` or a shell redirection gives; the
temporary file ``mkstemp`` makes is 0600 and is widened before the rename); a file that is
replaced keeps its own mode, as it would if it were overwritten in place. Commands call
:func:`check_writable` on every output before any work, so an unwritable path costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from planner.errors import InputError

YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (YAML requires keys to be unique)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let the base class report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file chosen by its suffix; any failure is an :class:`InputError`."""
    p = Path(path)
    name = str(path)
    suffix = p.suffix.lower()
    if suffix not in YAML_SUFFIXES + JSON_SUFFIXES:
        raise InputError(name, "-", f"unsupported file type {suffix or '(none)'!r}; use .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(name, "-", "file not found") from None
    except IsADirectoryError:
        raise InputError(name, "-", "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise InputError(name, "-", "not UTF-8 text") from None
    except OSError as exc:
        raise InputError(name, "-", f"cannot read: {exc.strerror or exc}") from None
    try:
        if suffix in JSON_SUFFIXES:
            return json.loads(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except (json.JSONDecodeError, ValueError) as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise InputError(name, "-", f"not valid JSON: {exc}") from None
        raise InputError(name, f"line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    except RecursionError:  # brackets nested thousands deep: the parsers recurse per level
        raise InputError(name, "-", "nested too deeply to be an instance, plan or catalog") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "-"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(name, where, f"not valid YAML: {problem}") from None


def _plain(obj: Any) -> Any:
    """Make a document safe for YAML/JSON: tuples to lists, numpy scalars to Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_document(doc: Any, suffix: str) -> str:
    """Serialise ``doc`` as YAML or JSON according to ``suffix``."""
    plain = _plain(doc)
    if suffix.lower() in JSON_SUFFIXES:
        return json.dumps(plain, indent=2) + "\n"
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_writer(path) as fh:
        fh.write(text)


def write_atomic_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path, binary=True) as fh:
        fh.write(data)


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` can only
    read it by setting it, which races with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(executable: bool = False) -> int:
    """The mode ``open()`` would give a new file (or a new directory/script when ``executable``)."""
    return (0o777 if executable else 0o666) & ~umask()


def _existing_mode(target: Path) -> int | None:
    try:
        st = os.stat(target)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def check_writable(path: str | Path, option: str, kind: str = "file") -> None:
    """Refuse an output that could not be written, before any work is done.

    ``kind``: ``file`` (a file replaced atomically: a temporary sibling is renamed onto it),
    ``dir`` (a directory files are written into) or ``tree`` (a directory built beside itself and
    renamed into place, as ``export`` does). Missing parent directories are fine (they are
    created when the output is written); the nearest one that exists must be a writable
    directory. The error names the option first: ``--out: PATH: why``.
    """
    target = Path(path)
    name = str(path)
    if kind == "file" and target.is_dir():
        raise InputError(option, name, "is a directory; give a file path")
    if kind != "file" and target.exists() and not target.is_dir():
        raise InputError(option, name, "exists and is not a directory")
    if kind == "dir" and target.is_dir():
        where = target  # files are created inside it
    else:
        where = target.parent  # a temporary sibling is created, then renamed onto the target
        while not where.exists() and where != where.parent:
            where = where.parent
    if where.exists() and not where.is_dir():
        raise InputError(option, name, f"{where} is a file, not a directory")
    if not _dir_writable(where):
        raise InputError(option, name, f"directory {where} is not writable")


def _dir_writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory``.

    ``access()`` answers for permissions and read-only mounts, but root passes it everywhere,
    even where the kernel refuses (``/proc``, ``/sys``): so a probe file is also created and
    removed at once (a dot-file, like the temporary files of the writes themselves).
    """
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".planner-probe.", dir=directory)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


class OutputError(InputError, OSError):
    """An output that could not be written (disk full, a directory removed meanwhile): one
    ``error:`` line naming it, like bad input, and still an OSError to library callers."""


def _write_failed(exc: OSError, path: Path) -> OutputError:
    return OutputError(None, str(path), f"cannot write: {exc.strerror or exc}")


# The open stages of :func:`staged_outputs`, innermost last: each maps a target to its temporary file.
_STAGES: list[dict[Path, str]] = []


@contextlib.contextmanager
def staged_outputs() -> Iterator[None]:
    """All files written through :func:`atomic_writer` inside the block reach their names
    together when the block ends without an exception, and none does otherwise: a command with
    several outputs (a summary, request rows, plots) leaves all of them new or all as they were
    — an interrupt while the plots render no longer leaves a new summary beside old plots.

    Until then each file is a fsync'ed temporary file in the nearest directory that exists (a new
    output directory is made only at the commit). The commit is renames only, with Ctrl-C held
    back until the last one is done (then raised). A rename that fails (a directory removed
    meanwhile) is an :class:`OutputError` naming the file; the files renamed before it stay."""
    stage: dict[Path, str] = {}
    _STAGES.append(stage)
    try:
        yield
    except BaseException:
        _STAGES.remove(stage)
        for tmp in stage.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    _STAGES.remove(stage)
    if _STAGES:  # a nested stage commits with the outer one
        _STAGES[-1].update(stage)
        return
    held: list[int] = []
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda sig, frame: held.append(sig)) if main else None
    try:
        items = list(stage.items())
        for k, (target, tmp) in enumerate(items):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            except OSError as exc:
                for _, rest in items[k:]:
                    Path(rest).unlink(missing_ok=True)
                raise _write_failed(exc, target) from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _nearest_dir(directory: Path) -> Path:
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


@contextlib.contextmanager
def atomic_writer(path: str | Path, binary: bool = False, executable: bool = False) -> Iterator[Any]:
    """A file handle on a temporary file beside ``path``, renamed onto it only if the block ends
    without an exception (so a stream of rows is never left half-written under the real name,
    and an interrupt or a failure leaves the previous file as it was). Inside
    :func:`staged_outputs` the rename waits for the stage's end."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    stage = _STAGES[-1] if _STAGES else None
    try:
        if stage is None:
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = _nearest_dir(directory)  # the directory itself is made at the commit
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _write_failed(exc, target) from None
    mode = _existing_mode(target)
    try:
        # mkstemp makes 0600: give the file the mode it would have had if written directly.
        os.fchmod(fd, file_mode(executable) if mode is None else mode)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if stage is None:
            os.replace(tmp, target)
        else:
            if (earlier := stage.get(target.absolute())) is not None:  # written twice: the last counts
                Path(earlier).unlink(missing_ok=True)
            stage[target.absolute()] = tmp
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        # A write of this file (ENOSPC, EDQUOT, EIO: no file name) or its rename; an error
        # naming another file comes from the caller's block (reading an input) and goes on.
        if exc.filename in (None, tmp, str(target)):
            raise _write_failed(exc, target) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_document(path: str | Path, doc: Any) -> None:
    """Write ``doc`` atomically, as JSON for ``.json`` and YAML otherwise."""
    write_atomic(path, dump_document(doc, Path(path).suffix))
