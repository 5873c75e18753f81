"""The distillation loop on real models: round 1 (teach -> train -> evaluate), routed traffic fills the
failure queue, round 2 folds it in from the cache (no teacher call), trains from the round-1 student,
and compare-rounds puts both rounds side by side. Teacher rewrites come from the shipped labels."""

from __future__ import annotations

import pytest

from ragdistill.common.data import load_rewrites
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.io import read_json, read_jsonl


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe and run ~10x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SMALL = ["query_rewriter.teach.tasks=[rewrite]", "query_rewriter.teach.rewrite_records=8", "query_rewriter.train.max_steps=1",
         "query_rewriter.train.batch_size=4", "query_rewriter.train.max_source_length=160", "query_rewriter.train.select_best=false",
         "query_rewriter.evaluate.test_records=4", "query_rewriter.evaluate.expansion_data=[]", "query_rewriter.evaluate.latency_queries=0",
         "query_rewriter.evaluate.systems=[teacher,student_base,student]", "routing.max_teacher_fraction=0.5",
         "routing.queue_disagreement=1.0", "monitor.baseline_inputs=0"]  # no held-out input is queued: round 2's evaluate stays held out


def test_two_rounds_with_the_failure_queue(make_cfg, work_dir):
    from ragdistill.query_rewriter import stage

    cfg = make_cfg("query_rewriter", SMALL)
    stage.teach(cfg)
    stage.train(cfg)
    r1 = stage.evaluate(cfg)["results"]
    stage.extra["calibrate"](cfg)
    assert not (work_dir / "query_rewriter/queue.jsonl").exists() or not load_queue(work_dir / "query_rewriter/queue.jsonl")

    # live traffic: train-split conversations never taught; this operating point sends every one to the teacher
    routed = stage.routed(cfg)
    routed.threshold = float("inf")
    live = load_rewrites("canard")["train"][8:14]
    for rec in live:
        assert routed(list(rec.history), rec.question)
    assert routed.stats()["n_teacher_calls"] == 6
    queued = load_queue(work_dir / "query_rewriter/queue.jsonl")
    assert len(queued) == 6 and {r.reason for r in queued} == {"routed"}

    round1 = stage.extra["next-round"](cfg)
    assert (round1 / "student/config.json").is_file() and read_json(round1 / "results.json")["results"] == r1
    assert read_json(round1 / "round.json")["queue"] == {"routed": 6}

    cfg2 = make_cfg("query_rewriter", [*SMALL, "data.extra=queue", f"student.model={round1 / 'student'}"])
    stats = stage.teach(cfg2)
    q = stats["queue"]
    assert q["records"] == 6 and q["already_taught"] == 0 and q["teacher_labels"]["rewrite"]["labelled"] == 0  # all from the cache
    rows = read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")
    assert sum(bool(r.get("from_queue")) for r in rows) == q["kept"] > 0 and len(rows) == 8 + q["kept"]
    assert read_json(work_dir / "query_rewriter/teach/stats.json")["queue"]["kept"] == q["kept"]

    info = stage.train(cfg2)
    assert info["student"] == str(round1 / "student") and info["targets"] == len(rows)
    r2 = stage.evaluate(cfg2)["results"]
    assert r2["student_base"]["recall_lift"] == pytest.approx(r1["student"]["recall_lift"])  # round 2 starts from round 1

    cmp = stage.extra["compare-rounds"](cfg2)
    assert cmp["columns"] == ["teacher", "round 1", "round 2"] and cmp["caveat"] is None
    assert cmp["results"]["round 1"]["recall_lift"] == r1["student"]["recall_lift"]
    assert cmp["results"]["round 2"]["recall_lift"] == r2["student"]["recall_lift"]
    text = (work_dir / "query_rewriter/rounds/comparison.txt").read_text()
    assert "round 2 - round 1" in text and "recall_lift" in text


def test_next_round_needs_a_trained_student_and_compare_needs_rounds(make_cfg):
    from ragdistill.common.errors import RagdistillError
    from ragdistill.query_rewriter import stage

    cfg = make_cfg("query_rewriter", [])
    with pytest.raises(RagdistillError, match="no trained student to keep; run `ragdistill query_rewriter train` first"):
        stage.extra["next-round"](cfg)
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter evaluate` first"):
        stage.extra["compare-rounds"](cfg)
