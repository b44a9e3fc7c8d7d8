"""Reading YAML/JSON documents and writing outputs atomically.

Outputs are written to a temporary file in the target directory and renamed into place, so a
reader never sees a half-written plan and a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
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


@contextlib.contextmanager
def atomic_writer(path: str | Path, binary: bool = False) -> Iterator[Any]:
    """A file handle on a temporary file beside ``path``, renamed onto it only if the block ends
    without an exception (so a stream of rows is never left half-written under the real name)."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_document(path: str | Path, doc: Any) -> None:
    """Write ``doc`` atomically, as JSON for ``.json`` and YAML otherwise."""
    write_atomic(path, dump_document(doc, Path(path).suffix))
