"""Start or join Ray the same way for every pipeline script.

Under `ray job submit` (RAY_ADDRESS is set) the script joins that cluster; otherwise it
starts an embedded one sized for this machine. Never a bare `ray.init()`: that attaches to
any cluster it finds and can hang on a dead one.
"""
from __future__ import annotations

import logging
import os

from pipelines.lineage import REPO_ROOT


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
        return address
    # Workers import the project's packages from the checkout, installed or not.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             object_store_memory=(object_store_mb or 1024) << 20, logging_level=logging.WARNING)
    return "local"


def _quiet_ray_data() -> None:
    """Our progress bar and report say what matters; Ray Data's per-operator logs do not."""
    import ray.data
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
