"""The stage contract (ARCHITECTURE.md, "The stage contract").

A stage is a callable `pa.Table -> pa.Table` over a batch of live rows. It returns the same
rows in the same order with its score columns added and, where it decides, a `drop_reason`
column (null = keep) and optionally `reject_detail`. Stateless stages are functions
decorated with `@stage`; stages that load a model subclass `ModelStage` and load it in
`__init__`, which runs once per Ray actor. Either kind works unchanged in a unit test and in
`ray.data.Dataset.map_batches(..., batch_format="pyarrow")`.

Each stage declares the `Resources` it wants (CPUs, GPUs, actor-pool size, rows per call);
the executor (`schemas/engine/execute.py`) gives every stage its own Ray Data operator with
them, and users override them per run (`--resources asr=gpus:0.5,actors:1-4`).
"""
from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

DROP = "drop_reason"
DETAIL = "reject_detail"


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs. `gpus` is used where the cluster has GPUs; a stage
    that cannot run without one says `needs_gpu` (on a CPU-only cluster it then fails before
    any work instead of waiting forever). `actors` bounds the actor pool (max None: as many as
    the cluster fits); `batch_rows` is the rows per stage call (None: the whole shard)."""
    cpus: float = 1.0
    gpus: float = 0.0
    needs_gpu: bool = False
    actors: tuple[int, int | None] = (1, None)
    batch_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "gpus": self.gpus, "needs_gpu": self.needs_gpu,
                "actors": list(self.actors), "batch_rows": self.batch_rows}


def parse_resources(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """`STAGE=key:value,...` items (or a JSON file of {stage: {key: value}}) → overrides.
    Keys: cpus, gpus, actors (N or MIN-MAX; in JSON also [MIN, MAX]), batch (rows per call).
    Later items win; every value is checked the same way, from the command line or a file."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if item.endswith(".json"):
            for name, kv in _resources_file(item).items():
                for key, value in kv.items():
                    if isinstance(value, list) and len(value) == 2:
                        value = f"{value[0]}-{value[1]}"
                    key, parsed = _resource_value(str(key), str(value), f"--resources {item}: {name}:")
                    out.setdefault(name, {})[key] = parsed
            continue
        name, sep, rest = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--resources '{item}': expected STAGE=key:value,... (e.g. asr=gpus:0.5,actors:1-4)")
        for kv in filter(None, rest.split(",")):
            key, _, value = kv.partition(":")
            key, parsed = _resource_value(key.strip(), value, f"--resources '{item}':")
            out.setdefault(name.strip(), {})[key] = parsed
    return out


def _resources_file(path: str) -> dict[str, dict[str, Any]]:
    import json
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--resources {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"--resources {path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"--resources {path}: expected {{stage: {{key: value}}}}")
    return data


def _resource_value(key: str, value: str, where: str) -> tuple[str, Any]:
    try:
        if key in ("cpus", "gpus"):
            parsed: Any = float(value)
            if not parsed >= 0 or parsed == float("inf"):
                raise ValueError
            if key == "gpus" and parsed > 1 and not parsed.is_integer():
                raise ValueError("a share below 1 or a whole number of GPUs")  # Ray's rule
        elif key == "actors":
            lo, _, hi = value.partition("-")
            parsed = [int(lo), int(hi) if hi else int(lo)]
            if parsed[0] < 1 or parsed[1] < parsed[0]:
                raise ValueError
        elif key in ("batch", "batch_rows"):
            parsed = int(value)
            if parsed < 1:
                raise ValueError
        else:
            raise KeyError(key)
    except KeyError:
        raise ValueError(f"{where} unknown key '{key}' (cpus, gpus, actors, batch)") from None
    except ValueError as e:
        why = f" ({e})" if str(e) and not str(e).startswith(("could not convert", "invalid literal")) else ""
        raise ValueError(f"{where} bad value for {key}: '{value}'{why}") from None
    return ("batch_rows" if key == "batch" else key), parsed


def with_overrides(res: Resources, over: dict[str, Any]) -> Resources:
    kw = res.to_dict()
    kw.update(over)
    kw["actors"] = tuple(kw["actors"])
    if over.get("gpus"):
        kw["needs_gpu"] = True  # asked for explicitly: never silently run on CPU instead
    return Resources(**kw)


class FunctionStage:
    """A function stage with its parameters bound; `kind` tells the runner to use tasks."""
    kind = "task"
    resources = Resources()

    def __init__(self, fn: Callable[..., pa.Table], name: str, adds: list[pa.Field], params: dict[str, Any]):
        self.fn, self.name, self.adds, self.params = fn, name, list(adds), dict(params)
        functools.update_wrapper(self, fn)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.fn(batch, **self.params)

    def configure(self, **params: Any) -> "FunctionStage":
        merged = {**self.params, **params}
        check_params(self.fn, self.name, merged)
        return FunctionStage(self.fn, self.name, self.adds, merged)

    def spec(self) -> "StageSpec":
        return StageSpec(self, self.params)


def stage(name: str | None = None, adds: list[pa.Field] | None = None):
    """Declare a function as a stage; `adds` lists the columns it writes (for the schema)."""
    def wrap(fn):
        return FunctionStage(fn, name or fn.__name__, adds or [], {})
    return wrap


class ModelStage:
    """Base of stages that load a model: subclasses load it in `__init__` (once per actor)."""
    kind = "actor"
    name: str = "model_stage"
    adds: list[pa.Field] = []
    resources = Resources()
    # A stage whose decisions need every shard (dedup) defines `signatures(live, **params)`
    # (per shard) and `decide(signature_files, out_uri, executor, **params)` (once, a shuffle):
    # the executor runs them in a pass before the main one and builds the stage with
    # `decisions=<out_uri>`.
    global_pass = False

    def __call__(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def model_info(cls, **params: Any) -> dict[str, Any]:
        """What goes into lineage (model hashes, voices): computed without loading."""
        return {}

    # A stage whose `__init__` takes **options may define `validate(**params)` (a classmethod
    # that raises TypeError on a bad one) so the pipeline is checked when it is built.


class StageConfigError(TypeError):
    """A stage was given parameters it does not take (or lacks one it needs): found when the
    pipeline is built, on the driver, instead of inside a Ray worker after planning."""


def unknown_parameter(given: dict[str, Any] | list[str], accepted: list[str]) -> str | None:
    """"unknown parameter 'x' (it takes: …); did you mean 'y'?" for the first name not accepted."""
    unknown = [k for k in given if k not in accepted]
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], accepted, n=1)
    return (f"unknown parameter {unknown[0]!r} (it takes: {', '.join(accepted) or 'none'})"
            + (f"; did you mean {close[0]!r}?" if close else ""))


def check_params(target: Any, name: str, params: dict[str, Any]) -> None:
    """Bind `params` to the stage's signature (a function after its batch argument, a class's
    `__init__` after self); a typo or a parameter given twice fails here, naming the stage and the
    parameter. A stage whose `__init__` takes **options checks them in its `validate`."""
    fn = target.fn if isinstance(target, FunctionStage) else target.__init__ if isinstance(target, type) else target
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return
    named = [p for p in list(sig.parameters)[1:]
             if sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        problem = unknown_parameter(params, named)
        if problem:
            raise StageConfigError(f"stage {name}: {problem}")
    try:
        sig.bind_partial(None, **params)  # partial: the executor may add one later (dedup's decisions)
        if isinstance(target, type) and callable(getattr(target, "validate", None)):
            target.validate(**params)
    except TypeError as e:
        raise StageConfigError(f"stage {name}: {e}") from None


@dataclass
class StageSpec:
    """How to build a stage inside a worker: the function or class plus its parameters, checked
    against the stage's signature when the spec is made (before any Ray work)."""
    target: Any
    params: dict[str, Any] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        check_params(self.target, self.name, self.params)

    @property
    def is_class(self) -> bool:
        return isinstance(self.target, type)

    @property
    def name(self) -> str:
        return self.target.name if self.is_class else getattr(self.target, "name", self.target.__name__)

    @property
    def kind(self) -> str:
        """`actor` for classes that load a model, `task` for functions and model-free classes."""
        return getattr(self.target, "kind", "actor") if self.is_class else "task"

    @property
    def adds(self) -> list[pa.Field]:
        return list(getattr(self.target, "adds", []))

    @property
    def resources(self) -> Resources:
        """The stage's declaration; a stage whose needs depend on its parameters (a generator
        that runs a local model wants a GPU, one calling an endpoint does not) defines
        `resources_for(**params)`."""
        if hasattr(self.target, "resources_for"):
            return self.target.resources_for(**self.params)
        return getattr(self.target, "resources", Resources())

    @property
    def global_pass(self) -> bool:
        return bool(getattr(self.target, "global_pass", False))

    @property
    def module(self) -> str:
        """The module holding the stage's code (its source is part of the run key)."""
        code = self.target.fn if isinstance(self.target, FunctionStage) else self.target
        return code.__module__

    def build(self):
        if self.is_class:
            return self.target(**self.params)
        if isinstance(self.target, FunctionStage):
            return self.target.configure(**self.params)
        return FunctionStage(self.target, self.name, self.adds, self.params)

    def describe(self) -> dict[str, Any]:
        code = self.target.fn if isinstance(self.target, FunctionStage) else self.target
        out = {"name": self.name, "kind": self.kind, "params": self.params,
               "code": f"{code.__module__}.{code.__qualname__}"}
        if self.is_class and hasattr(self.target, "model_info"):
            out["model"] = self.target.model_info(**self.params)
        return out


def as_spec(s: Any) -> StageSpec:
    if isinstance(s, StageSpec):
        return s
    if isinstance(s, FunctionStage):
        return s.spec()
    if isinstance(s, type):
        return StageSpec(s)
    raise TypeError(f"not a stage: {s!r}")


# ---- helpers stages use -------------------------------------------------------------
def annotate(batch: pa.Table, **columns: Any) -> pa.Table:
    """Add or replace columns (arrays or python lists)."""
    for name, values in columns.items():
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if name in batch.column_names:
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    return batch


def reject_where(batch: pa.Table, mask: Any, reason: str, detail: Any = None) -> pa.Table:
    """Give rows where `mask` is true the `reason`, unless an earlier rule already rejected them."""
    mask = pa.array(mask, pa.bool_()) if not isinstance(mask, (pa.Array, pa.ChunkedArray)) else mask
    mask = pc.fill_null(mask, False)
    current = batch.column(DROP) if DROP in batch.column_names else pa.nulls(batch.num_rows, pa.string())
    new = pc.if_else(pc.and_(mask, pc.is_null(current)), pa.scalar(reason, pa.string()), current)
    if detail is not None:
        cur_d = batch.column(DETAIL) if DETAIL in batch.column_names else pa.nulls(batch.num_rows, pa.string())
        det = detail if isinstance(detail, (pa.Array, pa.ChunkedArray)) else pa.array(
            detail if isinstance(detail, list) else [detail] * batch.num_rows, pa.string())
        batch = annotate(batch, **{DETAIL: pc.if_else(pc.and_(mask, pc.is_null(current)), det, cur_d)})
    return annotate(batch, **{DROP: new})


# ---- running a stage chain on one batch ------------------------------------------------
@dataclass
class StageCount:
    stage: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    reasons: dict[str, int] = dc_field(default_factory=dict)
    lost: int = 0      # rows of unreadable inputs, recorded only under `--on-unreadable record`
    seconds: float = 0.0  # worker time in the stage (model loading excluded)

    def add(self, other: "StageCount") -> None:
        self.seconds += other.seconds
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.rejected += other.rejected
        self.lost += other.lost
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v

    def to_dict(self) -> dict[str, Any]:
        out = {"stage": self.stage, "rows_in": self.rows_in, "rows_out": self.rows_out,
               "rejected": self.rejected, "reasons": dict(sorted(self.reasons.items()))}
        if self.lost:
            out["lost"] = self.lost
        out["seconds"] = round(self.seconds, 4)
        return out


def _error_rows(batch: pa.Table, name: str, exc: BaseException) -> pa.Table:
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    return annotate(batch, **{DROP: pa.array([f"error:{name}:{type(exc).__name__}"] * batch.num_rows, pa.string()),
                              DETAIL: pa.array([detail] * batch.num_rows, pa.string())})


class StageFailed(RuntimeError):
    """A stage that cannot run (out of memory, a missing library, failing on most rows): an
    infrastructure failure that fails the run loudly, never recorded as bad data."""


ERROR_BUDGET = 0.5     # default share of a batch a stage may fail on before the run fails
MIN_BUDGET_ROWS = 4    # below this many rows a batch says too little about the stage


def _infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, ImportError, StageFailed)) or "out of memory" in str(exc).lower()


def call_isolated(fn: Callable[[pa.Table], pa.Table], name: str, batch: pa.Table,
                  budget: float = ERROR_BUDGET) -> pa.Table:
    """Run a stage; if it raises, retry row by row so only the rows that fail become rejects.

    Within the error budget: a stage that fails on more than `budget` of a batch, or with an
    infrastructure error, is broken, not the data, and the run fails with the cause."""
    try:
        out = fn(batch)
    except Exception as exc:  # noqa: BLE001 - sorted below into bad rows and a broken stage
        if _infrastructure(exc):
            raise StageFailed(f"stage '{name}' cannot run: {type(exc).__name__}: {exc}") from exc
        if batch.num_rows <= 1:
            return _error_rows(batch, name, exc)
        parts = [call_isolated(fn, name, batch.slice(i, 1), budget=1.0) for i in range(batch.num_rows)]
        out = pa.concat_tables(parts, promote_options="permissive")
        failed = pc.sum(pc.starts_with(out.column(DROP), f"error:{name}:")).as_py() or 0
        if batch.num_rows >= MIN_BUDGET_ROWS and failed > budget * batch.num_rows:
            raise StageFailed(f"stage '{name}' failed on {failed} of {batch.num_rows} rows (error budget "
                              f"{budget:.0%}); first error: {type(exc).__name__}: {exc}"[:2000]) from exc
        return out
    if out.num_rows != batch.num_rows:
        raise RuntimeError(f"stage '{name}' returned {out.num_rows} rows for {batch.num_rows}: "
                           "stages annotate rows and mark drop_reason, they never drop them")
    return out


def run_stage(name: str, fn: Callable[[pa.Table], pa.Table], live: pa.Table, budget: float = ERROR_BUDGET,
              batch_rows: int | None = None) -> tuple[pa.Table, pa.Table | None, StageCount]:
    """One stage over a shard's live rows, `batch_rows` at a time: (live after, its rejects, count)."""
    import time
    t0 = time.perf_counter()
    count = StageCount(name, rows_in=live.num_rows)
    rejects = None
    if live.num_rows:
        step = batch_rows or live.num_rows
        parts = [call_isolated(fn, name, live.slice(i, step), budget) for i in range(0, live.num_rows, step)]
        out = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
        if DROP in out.column_names:
            dropped = pc.is_valid(out.column(DROP))
            rej = out.filter(dropped)
            if rej.num_rows:
                rejects = annotate(rej, reject_stage=pa.array([name] * rej.num_rows, pa.string()))
                count.reasons = dict(zip(*_value_counts(rej.column(DROP))))
            live = out.filter(pc.invert(dropped)).drop_columns([c for c in (DROP, DETAIL) if c in out.column_names])
            count.rejected = rej.num_rows
        else:
            live = out
    count.rows_out = live.num_rows
    count.seconds = time.perf_counter() - t0
    return live, rejects, count


def run_chain(stages: list[tuple[str, Callable[[pa.Table], pa.Table]]], batch: pa.Table,
              budget: float = ERROR_BUDGET) -> tuple[pa.Table, list[pa.Table], list[StageCount]]:
    """Apply stages in order to the live rows; return (kept, rejects per stage, counts)."""
    rejects: list[pa.Table] = []
    counts: list[StageCount] = []
    live = batch
    for name, fn in stages:
        live, rej, count = run_stage(name, fn, live, budget)
        if rej is not None:
            rejects.append(rej)
        counts.append(count)
    return live, rejects, counts


def _value_counts(col: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    vc = pc.value_counts(col)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()

