"""Test-wide settings: offline, wandb off the network, two threads (the CI machine's size)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


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
