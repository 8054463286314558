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

from schemas.engine.lineage import REPO_ROOT


def init_ray(num_cpus: int | None = None, object_store_mb: int | None = None) -> str:
    import ray

    if ray.is_initialized():
        return "existing"
    _quiet_ray_data()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        _start_data_coordinator()
        return address
    # Workers import the project's packages from the checkout, installed or not.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    with _loopback_only():
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=(object_store_mb or 1024) << 20, logging_level=logging.WARNING,
                 _node_ip_address=LOOPBACK)
    _start_data_coordinator()
    return "local"


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


LOOPBACK = "127.0.0.1"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only():
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
