"""The stage contract (ARCHITECTURE.md, "The stage contract").

A stage is a callable `pa.Table -> pa.Table` over a batch of live rows. It returns the same
rows in the same order with its score columns added and, where it decides, a `drop_reason`
column (null = keep) and optionally `reject_detail`. Stateless stages are functions
decorated with `@stage`; stage classes derive from `Stage` (`ModelStage` for those that load
a model in `__init__`, which runs once per Ray actor; `TaskStage` for those that load
nothing). Either form works unchanged in a unit test and in
`ray.data.Dataset.map_batches(..., batch_format="pyarrow")`.

What the engine reads from a stage is `StageContract`: its name, kind and added columns, and
the optional hooks (resources for its parameters, a global pass, privacy redaction, model
info for lineage, parameter validation), each defined once on `Stage` with the default that
means "not used". `StageSpec` reads a stage only through it.

Each stage declares the `Resources` it wants (CPUs, GPUs, actor-pool size, rows per call);
the executor gives every stage its own Ray Data operator with them (or one per run of
stages with the same needs), and users override them per run (`--resources asr=gpus:0.5,actors:1-4`).
"""
from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, ClassVar, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from schemas.engine.accounting import StageCount, reason_counts

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
        for pair in filter(None, rest.split(",")):
            key, _, text = pair.partition(":")
            key, parsed = _resource_value(key.strip(), text, f"--resources '{item}':")
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


# ---- the stage contract ---------------------------------------------------------------------
Kind = Literal["task", "actor"]


class StageContract(Protocol):
    """Everything the engine reads from a stage's declaration, in one place: a `Stage` subclass
    (the class itself) and a `@stage` function both provide it, so `StageSpec` reads it the same
    way for either and never probes for what a stage might offer. The optional hooks have
    defaults in `Stage` that mean "not used"."""

    @property
    def name(self) -> str: ...            # the stage's name in accounting, lineage and --resources

    @property
    def kind(self) -> str: ...            # "actor": built once per actor; "task": built per call

    @property
    def adds(self) -> list[pa.Field]: ...  # the columns it writes (the output schema)

    @property
    def global_pass(self) -> bool: ...    # hook: needs every shard before deciding (dedup)

    @property
    def redacts(self) -> bool: ...        # hook: privacy; what it removes is never persisted

    def resources_for(self, **params: Any) -> "Resources": ...  # hook: needs that depend on params

    def validate(self, **params: Any) -> None: ...  # hook: check **options (TypeError on a bad one)

    def model_info(self, **params: Any) -> dict[str, Any]: ...  # hook: what lineage records


class Stage:
    """Base of stage classes: the contract with each optional hook at its "not used" default.

    A subclass sets `name` and `adds`, loads what it needs in `__init__(**params)` and marks
    rows in `__call__`. `kind` says how often it is built: "actor" (default) once per actor,
    for state worth keeping (a model, dedup's decisions); "task" once per call, for a class
    that only holds its parameters. `ModelStage` and `TaskStage` fix the kind."""
    name: ClassVar[str] = "stage"
    kind: ClassVar[Kind] = "actor"
    adds: ClassVar[list[pa.Field]] = []
    resources: ClassVar[Resources] = Resources()
    # Global pass: `signatures(live, **params)` per shard, then `decide(signature_files, out,
    # executor, **params)` once (a shuffle); the main pass builds the stage with `decisions=out`.
    global_pass: ClassVar[bool] = False
    # Privacy: `redact_strings(values)` is applied to every text of every reject so far, since
    # rejects are persisted too (unless the run keeps raw rejects).
    redacts: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A hook switched on without its methods fails where the class is defined."""
        super().__init_subclass__(**kwargs)
        if cls.global_pass and (cls.signatures is Stage.signatures or cls.decide is Stage.decide):
            raise TypeError(f"stage class {cls.__name__}: global_pass needs signatures() and decide()")
        if cls.redacts and cls.redact_strings is Stage.redact_strings:
            raise TypeError(f"stage class {cls.__name__}: redacts needs redact_strings()")

    def __call__(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - every stage defines it
        raise NotImplementedError

    @classmethod
    def resources_for(cls, **params: Any) -> Resources:
        """What one worker needs with these parameters (a generator calling an endpoint needs
        no GPU, one running a local model does); the declared `resources` by default."""
        return cls.resources

    @classmethod
    def validate(cls, **params: Any) -> None:
        """Parameters the signature cannot check (a stage taking **options): raise TypeError
        on a bad one, so the pipeline fails when it is built. Nothing to check by default."""

    @classmethod
    def model_info(cls, **params: Any) -> dict[str, Any]:
        """What lineage records about the stage's model (hashes, voices), computed without
        loading it. Nothing by default."""
        return {}

    @staticmethod
    def signatures(live: pa.Table, **params: Any) -> pa.Table:  # pragma: no cover - global_pass only
        raise NotImplementedError

    @staticmethod
    def decide(signature_files: list[str], out: str, executor: str = "local",
               **params: Any) -> dict[str, Any]:  # pragma: no cover - global_pass only
        raise NotImplementedError

    def redact_strings(self, values: list[str | None]) -> list[str | None]:  # pragma: no cover - redacts only
        raise NotImplementedError


class ModelStage(Stage):
    """Base of stages that load a model: subclasses load it in `__init__` (once per actor)."""
    kind: ClassVar[Kind] = "actor"
    name: ClassVar[str] = "model_stage"


class TaskStage(Stage):
    """Base of stage classes that load nothing (thresholds only): built per task, no actor pool."""
    kind: ClassVar[Kind] = "task"


class FunctionStage:
    """A `@stage` function with its parameters bound: the contract for a function, which has no
    hooks to offer (kind "task", the declared resources, no global pass, nothing redacted)."""
    kind: Kind = "task"
    resources = Resources()
    global_pass = False
    redacts = False

    def __init__(self, fn: Callable[..., pa.Table], name: str, adds: list[pa.Field], params: dict[str, Any]):
        self.fn, self.name, self.adds, self.params = fn, name, list(adds), dict(params)
        functools.update_wrapper(self, fn)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.fn(batch, **self.params)

    def configure(self, **params: Any) -> FunctionStage:
        merged = {**self.params, **params}
        check_params(self, self.name, merged)
        return FunctionStage(self.fn, self.name, self.adds, merged)

    def spec(self) -> StageSpec:
        return StageSpec(self, self.params)

    def resources_for(self, **params: Any) -> Resources:
        return self.resources

    def validate(self, **params: Any) -> None:
        """The signature says it all: `check_params` binds the parameters to it."""

    def model_info(self, **params: Any) -> dict[str, Any]:
        return {}


def stage(name: str | None = None,
          adds: list[pa.Field] | None = None) -> Callable[[Callable[..., pa.Table]], FunctionStage]:
    """Declare a function `(batch, **params) -> batch` as a stage; `adds` lists the columns it
    writes (for the schema)."""
    def wrap(fn: Callable[..., pa.Table]) -> FunctionStage:
        return FunctionStage(fn, name or fn.__name__, adds or [], {})
    return wrap


StageTarget = type[Stage] | FunctionStage  # the two forms a stage is written in


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


def check_params(target: StageTarget, name: str, params: dict[str, Any]) -> None:
    """Bind `params` to the stage's signature (a function after its batch argument, a class's
    `__init__` after self), then its `validate` hook; a typo or a parameter given twice fails
    here, naming the stage and the parameter."""
    fn = target.fn if isinstance(target, FunctionStage) else target.__init__
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        sig = None
    if sig is not None:
        named = [p for p in list(sig.parameters)[1:]
                 if sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            problem = unknown_parameter(params, named)
            if problem:
                raise StageConfigError(f"stage {name}: {problem}")
    try:
        if sig is not None:
            sig.bind_partial(None, **params)  # partial: the executor may add one later (dedup's decisions)
        target.validate(**params)
    except TypeError as e:
        raise StageConfigError(f"stage {name}: {e}") from None


@dataclass
class StageSpec:
    """How to build a stage inside a worker: the stage (a `Stage` subclass or a `@stage`
    function) plus its parameters, checked against the stage's signature and `validate` hook
    when the spec is made (before any Ray work). Everything else is read from the contract."""
    target: StageTarget
    params: dict[str, Any] = dc_field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.target, FunctionStage)
                or (isinstance(self.target, type) and issubclass(self.target, Stage))):
            raise StageConfigError(
                f"not a stage: {self.target!r} (decorate a function with @stage, or derive a class from "
                "schemas.engine.TaskStage, or ModelStage where it loads a model)")
        check_params(self.target, self.name, self.params)

    @property
    def contract(self) -> StageContract:
        return self.target

    @property
    def is_class(self) -> bool:
        return isinstance(self.target, type)

    @property
    def name(self) -> str:
        return self.contract.name

    @property
    def kind(self) -> str:
        """`actor` for classes built once per actor, `task` for functions and parameter-only classes."""
        return self.contract.kind

    @property
    def adds(self) -> list[pa.Field]:
        return list(self.contract.adds)

    @property
    def resources(self) -> Resources:
        """The stage's declaration, for these parameters."""
        return self.contract.resources_for(**self.params)

    @property
    def global_pass(self) -> bool:
        return self.contract.global_pass

    @property
    def redacts(self) -> bool:
        return self.contract.redacts

    @property
    def code(self) -> Any:
        """The function or class holding the stage's code (its module's source is part of the run key)."""
        return self.target.fn if isinstance(self.target, FunctionStage) else self.target

    @property
    def module(self) -> str:
        return str(self.code.__module__)

    def build(self) -> Stage | FunctionStage:
        if isinstance(self.target, FunctionStage):
            return self.target.configure(**self.params)
        return self.target(**self.params)

    def signatures(self, live: pa.Table) -> pa.Table:
        """The global pass's per-shard hook, with this spec's parameters."""
        return self._global().signatures(live, **self.params)

    def decide(self, signature_files: list[str], out: str, executor: str) -> dict[str, Any]:
        """The global pass's once-over-all hook, with this spec's parameters."""
        return self._global().decide(signature_files, out, executor, **self.params)

    def _global(self) -> type[Stage]:
        if isinstance(self.target, FunctionStage) or not self.global_pass:
            raise TypeError(f"stage {self.name} has no global pass")
        return self.target

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, "params": self.params,
               "code": f"{self.code.__module__}.{self.code.__qualname__}"}
        if self.is_class:
            out["model"] = self.contract.model_info(**self.params)
        return out


def as_spec(s: StageSpec | StageTarget) -> StageSpec:
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
    except Exception as exc:  # sorted below into bad rows and a broken stage
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
                count.reasons = reason_counts(rej)
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

