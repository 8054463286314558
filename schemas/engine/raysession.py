"""Start or join Ray the same way for every pipeline script.

Under `ray job submit` (RAY_ADDRESS is set) the script joins that cluster; otherwise it
starts an embedded one sized for this machine. Never a bare `ray.init()`: that attaches to
any cluster it finds and can hang on a dead one.

The embedded cluster runs with auth disabled, so it must not be reachable from the network:
every Ray server (GCS, raylet, object manager, workers, agents) listens on 127.0.0.1 only.
Ray maps a node IP of 127.0.0.1 to the machine's routable address unless its single-node
setting (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the default on macOS and Windows) is off;
then the servers bind to the loopback address they are given.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Callable, Iterator

from schemas.engine.lineage import REPO_ROOT


class RayStartFailed(RuntimeError):
    """Ray did not start (or could not be joined) in START_ATTEMPTS tries: one line saying what to do."""


START_ATTEMPTS = 3      # tries of one start: a loaded machine can miss Ray's fixed 30 s raylet wait
START_BACKOFF_S = 5.0   # wait before the 2nd try; doubled before each later one
_sleep = time.sleep     # tests replace it


def init_ray(num_cpus: int | None = None, object_store_mb: int | None = None) -> str:
    import ray

    if ray.is_initialized():
        return "existing"
    _quiet_ray_data()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _start(lambda: ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True),
               f"could not join the Ray cluster at RAY_ADDRESS={address}",
               "check that it is up (`ray status`), or unset RAY_ADDRESS to run on an embedded Ray")
        _start_data_coordinator()
        return address
    # Workers import the project's packages from the checkout, installed or not.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])

    def start() -> None:
        with _loopback_only():
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     object_store_memory=(object_store_mb or 1024) << 20, logging_level=logging.WARNING,
                     _node_ip_address=LOOPBACK, _system_config=dict(EMBEDDED_SYSTEM_CONFIG))
    _start(start, "could not start the embedded Ray",
           "the machine is probably overloaded: rerun when it is less busy, "
           "start fewer Ray workers (--num-cpus), or run in-process (--executor local)")
    _start_data_coordinator()
    return "local"


def _start(start: Callable[[], object], failed: str, advice: str) -> None:
    """`start()` up to START_ATTEMPTS times, with a growing wait between tries. A failed try is
    shut down first: Ray's driver state, and the processes it had started for the node (GCS,
    raylet, their workers: children of this process that were not there before the try), which
    `ray.shutdown` cannot reach when the node failed inside its constructor. Usage errors
    (ValueError, TypeError) are not retried. Raises RayStartFailed, one line, in the end."""
    last: BaseException | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        before = _children()
        try:
            start()
            return
        except (ValueError, TypeError):
            raise
        except Exception as e:  # noqa: BLE001 - e.g. "The current node timed out during startup"
            last = e
            _shut_down_failed_start(before)
            if attempt < START_ATTEMPTS:
                wait = START_BACKOFF_S * 2 ** (attempt - 1)
                logging.getLogger(__name__).warning(
                    "Ray start failed (try %d of %d: %s); trying again in %.0f s",
                    attempt, START_ATTEMPTS, _first_line(e), wait)
                _sleep(wait)
    raise RayStartFailed(f"{failed} in {START_ATTEMPTS} tries (last: {type(last).__name__}: "
                         f"{_first_line(last)}); {advice}") from last


def _first_line(e: BaseException | None) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else "no message")[:300]


def _children() -> set[int]:
    import psutil
    try:
        return {p.pid for p in psutil.Process().children()}
    except psutil.Error:
        return set()


def _shut_down_failed_start(before: set[int]) -> None:
    """Ray's driver state reset, and each process this process started during the try (a direct
    child that was not there before it) ended with everything under it (a raylet's workers)."""
    import psutil
    import ray
    with contextlib.suppress(Exception):  # best effort: the try already failed
        ray.shutdown()
    started: list[psutil.Process] = []
    try:
        for child in psutil.Process().children():
            if child.pid not in before:
                with contextlib.suppress(psutil.Error):
                    started += [*child.children(recursive=True), child]
    except psutil.Error:
        return
    for p in started:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(started, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def _start_data_coordinator(timeout_s: float = 120.0) -> bool:
    """Start Ray Data's autoscaling coordinator now, while the cluster is idle.

    Ray Data sizes every execution by what this cluster-wide actor (detached, one per cluster)
    has reserved for it; until the actor answers, an execution's resource limits are zero and
    its first operator gets nothing. Left to itself the first execution creates the actor, whose
    worker then starts beside the stages' actor pools (a worker process at a time per CPU): on a
    loaded machine that took over a minute, Ray Data logged "Cluster resources are not enough to
    run any task … The job may hang forever" (its starvation warning, after 60 s of zero
    limits) and nothing ran meanwhile, though the cluster had the CPUs. Started here it answers
    within a second of each execution's start. Best effort: a Ray without it, or a coordinator
    that does not answer in `timeout_s`, leaves Ray Data to start it as before."""
    import ray
    try:
        from ray.data._internal.cluster_autoscaler import get_or_create_autoscaling_coordinator
        actor = get_or_create_autoscaling_coordinator()
        ray.get(actor.get_reserved_resources.remote("curate-warmup"), timeout=timeout_s)
        return True
    except Exception:  # noqa: BLE001 - an optimisation only: never fails the run
        return False


# The embedded Ray never ends a task worker for idling (issue 30). Ray 2.60's idle exit can abort
# the exiting worker: `CoreWorkerShutdownExecutor::DisconnectServices` calls opencensus'
# `StatsExporter::ExportNow()`, whose first `DeltaProducer` starts its harvester thread before
# initialising the mutex that thread locks every 100 ms; a worker starved of CPU then prints
# `Mutex corrupt` / `SIGABRT` / `Fatal Python error: Aborted` on the run's stderr (about 1 run in
# 17 on a loaded 2-core machine). No Ray setting skips that export, so the exit is avoided: idle
# task workers stay in Ray's pool until the run's later tasks and actors take them (an actor's
# worker ends with its actor), or the session ends. Measured on 2 CPUs (text, speech, flagship):
# no more workers at peak, fewer started (text curation 14 against 22-30), and the pool did not
# grow over the flagship's executions. A cluster started with `ray start` keeps Ray's default and
# can still print the dump; the fix is Ray's.
EMBEDDED_SYSTEM_CONFIG = {"kill_idle_workers_interval_ms": 0}

LOOPBACK = "127.0.0.1"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray's single-node mode for the embedded start: the node IP stays 127.0.0.1 (the driver
    read the setting when `ray` was imported, so its copy is switched too; the processes Ray
    starts read the environment). Both are put back afterwards: a later `ray start` or job
    submission from this process is not affected."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_SINGLE_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_SINGLE_NODE_ENV, None)
        else:
            os.environ[_SINGLE_NODE_ENV] = saved_env


def _quiet_ray_data() -> None:
    """Our progress bar and report say what matters; Ray Data's per-operator logs do not."""
    import ray.data
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
