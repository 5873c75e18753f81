"""Test-wide settings: offline, wandb off the network; under `make test`'s 2 xdist workers one thread each
(the CI machine has 2 cores), a file per worker and the longest work first."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # 2 workers on 2 cores: one thread each (two each oversubscribe, ~5x slower)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest


@pytest.fixture
def work_dir(tmp_path):
    """A fresh work dir; stage artifacts and the label cache go under it."""
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def make_cfg(work_dir):
    """``make_cfg("embedder", ["data.max_queries=20"])``: a composed stage config writing under work_dir."""
    from ragdistill.common.config import compose

    def _make(stage: str, overrides: list[str] | None = None):
        return compose(stage, [f"paths.work_dir={work_dir}", "run.report_to=[]", *(overrides or [])])

    return _make


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: on a shared 2-core machine two threads oversubscribe
    and run ~10x slower. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def link_student(work_dir):
    """``link_student(stage, model)``: a packaged model placed where ``<stage> train`` keeps the
    distilled student (``<work_dir>/<stage>/train/student``), as a link: nothing is copied. For
    tests of the verbs after train (export, calibrate, routing) that need a student, not training."""
    from ragdistill.common.models import resolve_model

    def _link(stage: str, model: str):
        d = work_dir / stage / "train" / "student"
        d.parent.mkdir(parents=True, exist_ok=True)
        d.symlink_to(resolve_model(model), target_is_directory=True)
        return d

    return _link


# pytest-xdist (`make test` runs 2 workers): a test file stays on one worker, so a module-scoped
# fixture (the e2e harness's trained stages, the fleet's servers) is built once, and the tests that
# start a Ray runtime share one worker, so two local Ray runtimes never compete for this machine.
# (A scheduler, not `xdist_group` marks: xdist 3.8's loadgroup does not see marks under pytest 9.)
# The two longest scopes (about 7 and 5 minutes here) start first, one on each worker.
RAY_FILES = {"test_scale_ray.py", "test_scale_ray_llm.py"}
RAY_TESTS = {"test_hybrid_teacher_labels_the_same_locally_and_on_ray"}
LONGEST_FIRST = ("ray", "e2e/tests/test_pipeline_modes.py")


def _scope(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    ray = path.rsplit("/", 1)[-1] in RAY_FILES or name.split("[")[0] in RAY_TESTS
    return "ray" if ray else path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {s: i for i, s in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_scope(item.nodeid), len(rank)))  # stable: file order kept otherwise


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class FileOrRayScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    config.option.loadscopereorder = False  # keep the collection order above (xdist would sort by test count)
    return FileOrRayScheduling(config, log)
