"""query_rewriter calibrate and the routed component with real models: the SmolLM2-135M student
(here undistilled, where ``train`` writes the student) against the packaged Qwen2.5-0.5B teacher,
whose rewrites of the held-out CANARD records ship in ``data/labels/query_rewriter.jsonl``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.common.cache import LabelCache
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.io import read_jsonl
from ragdistill.common.models import resolve_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe and run ~10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def student_dir(work_dir):
    """The packaged student where ``query_rewriter train`` writes its model (a link: nothing is copied)."""
    d = work_dir / "query_rewriter/train/model"
    d.parent.mkdir(parents=True)
    d.symlink_to(resolve_model("smollm2-135m-instruct"), target_is_directory=True)
    return d


def test_calibrate_on_held_out_records_and_route(make_cfg, work_dir, student_dir):
    from ragdistill.query_rewriter import stage
    from ragdistill.query_rewriter.calibrate import rewrite_template
    from ragdistill.query_rewriter.examples import test_set
    from ragdistill.query_rewriter.teach import label_teacher_id, open_cache, teacher_outputs

    cfg = make_cfg("query_rewriter", ["query_rewriter.evaluate.test_records=4", "routing.max_teacher_fraction=0.25", "run.torch_threads=1"])
    out = stage.extra["calibrate"](cfg)
    assert out["n"] == 4 and out["signal"] == "sequence_logprob" and out["quality_metric"] == "recall_lift"
    assert out["teacher_fraction"] <= 0.25 and out["quality"] >= out["student_quality"]
    d = json.loads((work_dir / "query_rewriter/calibrate/routing_curve.json").read_text())
    assert d["curve"][0]["quality"] == pytest.approx(out["student_quality"]) and d["curve"][-1]["quality"] == pytest.approx(out["teacher_quality"])
    assert (work_dir / "query_rewriter/calibrate/routing_curve.png").is_file()
    items = read_jsonl(work_dir / "query_rewriter/calibrate/items.jsonl")
    assert len(items) == 4 and all(r["confidence"] < 0 for r in items)
    assert all(-1 <= r["student_quality"] <= 1 for r in items)

    # a queued disagreement carries the teach payload (the conversation text) under teach's cache key
    if out["queued_inputs"]:
        recs = load_queue(work_dir / "query_rewriter/queue.jsonl")
        assert {r.template for r in recs} == {rewrite_template(cfg)} and {r.teacher_id for r in recs} == {label_teacher_id(cfg.teacher)}
        sources = {e.source for e in test_set(cfg).examples}
        assert all(r.input in sources and r.input.rstrip().splitlines()[-1].startswith("Follow-up question:") for r in recs)

    # the routed component on one held-out record; the teacher's rewrite comes from the cache
    routed = stage.routed(cfg)
    rec = test_set(cfg).records[0]
    q = routed(list(rec.history), rec.question)
    st = routed.stats()
    assert isinstance(q, str) and q and st["n_calls"] == 1 and np.isfinite(routed.student.last_confidence)
    assert st["n_teacher_calls"] == int(routed.student.last_confidence < d["threshold"])
    cache = open_cache(cfg)
    try:
        assert teacher_outputs(cfg, test_set(cfg).examples[:1], cache, teacher=None)[0] is not None  # no teacher load: cached
    finally:
        cache.close()
    assert len(LabelCache(cfg.paths.label_cache)) > 0


def test_a_signal_of_another_stage_is_a_config_error(make_cfg, student_dir):
    from ragdistill.common.errors import RagdistillError
    from ragdistill.query_rewriter import stage

    with pytest.raises(RagdistillError, match=r"routing.signal='margin': the rewriter routes on log p"):
        stage.extra["calibrate"](make_cfg("query_rewriter", ["routing.signal=margin"]))


def test_monitor_baseline_from_held_out_records(make_cfg, work_dir, student_dir):
    from ragdistill.common.io import read_json
    from ragdistill.query_rewriter.calibrate import monitor_baseline

    base = monitor_baseline(make_cfg("query_rewriter", ["monitor.baseline_inputs=2", "run.torch_threads=1"]))
    saved = read_json(work_dir / "query_rewriter/export/monitor_baseline.json")
    assert saved["stage"] == "query_rewriter" and saved["metrics"]["n"] == 2 == base["metrics"]["n"]
    assert 0.0 <= saved["divergence"] <= 1.0 and "held-out test: 2 records" == saved["source"]
