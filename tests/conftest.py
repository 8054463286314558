import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray workers import stages from the repo and from tests/ (exported before ray.init).
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"),
                                            *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(autouse=True)
def _environment_restored():
    """What a test exports stays in that test: the CLI, run in process by CliRunner, exports
    CURATE_CATALOG (and sets this process's S3 settings) for the stages it launches, and a later
    test's Store would otherwise open that catalog instead of its own warehouse."""
    from schemas.filesystem import use_catalog
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    use_catalog(None)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (start-up costs ~15 s)."""
    import ray

    from schemas.engine.raysession import init_ray
    init_ray(num_cpus=2, object_store_mb=512)
    yield ray
    ray.shutdown()


@pytest.fixture
def warehouse(tmp_path):
    return str(tmp_path / "warehouse")


@pytest.fixture(scope="module")
def verifier():
    """The rule verifier with math-verify in its child process (closed after the module)."""
    from synth.verify import RuleVerifier
    v = RuleVerifier(timeout_s=10)
    yield v
    v.close()
