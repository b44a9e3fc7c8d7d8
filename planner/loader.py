"""Loading instance files and catalogs into a validated :class:`~planner.problem.Instance`.

Resolution of ``models`` and ``gpus`` entries:

* a string is a catalog id, looked up in the ``include:`` catalogs (later files win), then in the
  built-in catalog shipped in ``models/``;
* a mapping whose ``id`` is a catalog id takes the catalog entry and overrides the keys it gives
  (``{id: h100-80gb, price_per_hour: 2.1, available: 16}``);
* any other mapping is a full inline spec.

Every failure becomes one :class:`~planner.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from planner.errors import InputError
from planner.fileio import read_document
from planner.gcpause import paused_gc
from planner.perf.calibration import resolve_reference
from planner.problem import GPU, LLM, Instance, check_consistency

CATALOG_FILES = ("llms.yaml", "gpus.yaml")


def builtin_catalog_dir() -> Path:
    """``models/`` beside the package in a checkout; ``planner/_catalog`` inside a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "models", here / "_catalog"):
        if (candidate / "llms.yaml").is_file():
            return candidate
    return here.parent / "models"


def _loc(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "-"


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required field is missing",
}


def validation_error(file: str, exc: ValidationError, prefix: str = "") -> InputError:
    """The first pydantic error as one line; the count of further errors is appended."""
    errs = exc.errors(include_url=False)
    first = errs[0]
    msg = _MESSAGES.get(first["type"], first["msg"])
    if first["type"] not in _MESSAGES and "input" in first and not isinstance(first["input"], dict | list):
        msg = f"{msg} (got {first['input']!r})"
    if len(errs) > 1:
        msg += f" (+{len(errs) - 1} more)"
    return InputError(file, _loc(tuple(first["loc"]), prefix), msg)


def _validate(cls: type[BaseModel], data: Any, file: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(file, prefix, f"must be a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(file, exc, prefix) from None


class Catalog:
    """Model and GPU specs by id, each remembering the file it came from."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}
        self.gpus: dict[str, dict[str, Any]] = {}

    def add_file(self, path: Path, label: str) -> None:
        doc = read_document(path)
        if not isinstance(doc, dict):
            raise InputError(label, "-", "a catalog must be a mapping with `models:` and/or `gpus:` lists")
        unknown = set(doc) - {"models", "gpus"}
        if unknown:
            raise InputError(label, sorted(unknown)[0], "unknown key (a catalog holds `models:` and `gpus:`)")
        for key, cls, store in (("models", LLM, self.models), ("gpus", GPU, self.gpus)):
            items = doc.get(key) or []
            if not isinstance(items, list):
                raise InputError(label, key, "must be a list")
            for n, item in enumerate(items):
                spec = _validate(cls, item, label, f"{key}[{n}]")
                store[spec.id] = item

    def merged(self, other: Catalog) -> Catalog:
        out = Catalog()
        out.models = {**other.models, **self.models}
        out.gpus = {**other.gpus, **self.gpus}
        return out


@functools.lru_cache(maxsize=1)
def builtin_catalog() -> Catalog:
    cat = Catalog()
    base = builtin_catalog_dir()
    for name in CATALOG_FILES:
        path = base / name
        if path.is_file():
            cat.add_file(path, str(path))
    return cat


def _resolve(entries: Any, key: str, cls: type[BaseModel], table: dict[str, dict[str, Any]], file: str) -> list[Any]:
    if not isinstance(entries, list):
        raise InputError(file, key, "must be a list of catalog ids or specs")
    out = []
    for n, entry in enumerate(entries):
        field = f"{key}[{n}]"
        if isinstance(entry, str):
            if entry not in table:
                raise InputError(
                    file, field, f"unknown {key[:-1]} id {entry!r} (not in the included or built-in catalog)"
                )
            data = table[entry]
        elif isinstance(entry, dict):
            base = table.get(entry.get("id")) if isinstance(entry.get("id"), str) else None
            data = {**base, **entry} if base is not None else entry
        else:
            raise InputError(file, field, f"must be a catalog id or a mapping, got {type(entry).__name__}")
        out.append(_validate(cls, data, file, field))
    return out


def _fill_task_errors(doc: dict[str, Any], models: list[LLM], file: str) -> dict[str, Any]:
    """Missing e[m][i] come from the model's catalog ``task_errors`` when type i names a ``task``."""
    errors = doc.get("errors") or {}
    if not isinstance(errors, dict):
        raise InputError(file, "errors", "must be a mapping model -> {query type: error rate}")
    filled: dict[str, Any] = {}
    for m, row in errors.items():
        if not isinstance(row, dict):
            raise InputError(file, f"errors.{m}", "must be a mapping query type -> error rate")
        filled[str(m)] = {str(t): v for t, v in row.items()}
    types = doc.get("query_types") or []
    for q in types if isinstance(types, list) else []:
        if not isinstance(q, dict) or not isinstance(q.get("task"), str) or not isinstance(q.get("id"), str):
            continue
        for m in models:
            if q["task"] in m.task_errors and q["id"] not in filled.get(m.id, {}):
                filled.setdefault(m.id, {})[q["id"]] = m.task_errors[q["task"]]
    return filled


def load_instance_data(doc: Any, file: str, base_dir: Path | None = None) -> Instance:
    """Validate an already parsed instance document (``file`` names it in errors)."""
    if not isinstance(doc, dict):
        raise InputError(file, "-", "an instance must be a mapping at the top level")
    base_dir = base_dir or Path(".")
    catalog = builtin_catalog()
    include = doc.get("include") or []
    if isinstance(include, str):
        include = [include]
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise InputError(file, "include", "must be a list of catalog file paths")
    local = Catalog()
    for n, rel in enumerate(include):
        path = (base_dir / rel).resolve()
        if not path.exists():
            raise InputError(file, f"include[{n}]", f"catalog file {rel!r} not found (relative to the instance)")
        if not path.is_file():
            raise InputError(file, f"include[{n}]", f"{rel!r} is not a file")
        local.add_file(path, str(path))
    catalog = local.merged(catalog)

    for key in ("models", "gpus", "query_types"):
        if key not in doc:
            raise InputError(file, key, "required field is missing")
    models = _resolve(doc["models"], "models", LLM, catalog.models, file)
    gpus = _resolve(doc["gpus"], "gpus", GPU, catalog.gpus, file)
    data = dict(doc)
    data["models"] = models
    data["gpus"] = gpus
    data["include"] = include
    data["errors"] = _fill_task_errors(doc, models, file)
    data.setdefault("name", Path(file).stem)
    if isinstance(data.get("scaling"), dict) and data["scaling"].get("demand_csv") is not None:
        data["scaling"] = _windows_from_csv(data["scaling"], base_dir, file)
    if data.get("calibration") is not None:  # a path relative to the instance becomes absolute
        data["calibration"] = resolve_reference(data["calibration"], base_dir, file)
    with paused_gc():  # ~10⁶ performance entries at fleet scale (planner.gcpause)
        try:
            inst = Instance.model_validate(data)
        except ValidationError as exc:
            raise validation_error(file, exc) from None
        try:
            check_consistency(inst)
        except InputError as exc:
            raise exc.in_file(file) from None
    return inst


def _windows_from_csv(scaling: dict[str, Any], base_dir: Path, file: str) -> dict[str, Any]:
    """``scaling.demand_csv`` (a ``planner demand`` CSV) → inline windows (one per CSV window)."""
    if scaling.get("windows"):
        raise InputError(file, "scaling.demand_csv", "give either windows or demand_csv, not both")
    rel = scaling["demand_csv"]
    if not isinstance(rel, str):
        raise InputError(file, "scaling.demand_csv", "must be a file path")
    path = (base_dir / rel).resolve()
    if not path.is_file():
        raise InputError(file, "scaling.demand_csv", f"demand file {rel!r} not found (relative to the instance)")
    from planner.review.demand import read_demand_csv

    demand = read_demand_csv(path)
    windows: dict[int, dict[str, Any]] = {}
    for r in demand.rows:
        w = windows.setdefault(r.window, {"id": f"w{r.window}", "hours": (r.end_s - r.start_s) / 3600.0, "rates": {}})
        w["rates"][r.query_type] = r.arrival_rate
    out = dict(scaling)
    out["windows"] = [windows[k] for k in sorted(windows)]
    out["demand_csv"] = str(path)
    return out


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance file (YAML or JSON)."""
    p = Path(path)
    doc = read_document(p)
    return load_instance_data(doc, str(path), p.resolve().parent)
