"""The distillation loop on real models, through the shared operations: round 1 (teach -> train ->
evaluate), routed traffic fills the failure queue, round 2 folds it in from the cache (no teacher call),
trains from the round-1 student, and compare-rounds puts both rounds side by side. Teacher rewrites
come from the shipped labels."""

from __future__ import annotations

import pytest

from ragdistill.common.data import load_rewrites
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.common.ops import routed
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.query_rewriter import stage

pytestmark = pytest.mark.usefixtures("one_thread")
VERBS = stage_verbs(stage)

SMALL = ["query_rewriter.teach.tasks=[rewrite]", "query_rewriter.teach.rewrite_records=8", "query_rewriter.train.args.max_steps=1",
         "query_rewriter.train.args.per_device_train_batch_size=4", "query_rewriter.train.max_source_length=160",
         "query_rewriter.train.select_best=false", "query_rewriter.evaluate.test_records=4", "query_rewriter.evaluate.expansion_data=[]",
         "query_rewriter.evaluate.latency_queries=0", "query_rewriter.evaluate.systems=[teacher,student_base,student]",
         "routing.max_teacher_fraction=0.5", "routing.queue_disagreement=1.0",  # no held-out input is queued: round 2's evaluate stays held out
         "monitor.baseline_inputs=0"]


def test_two_rounds_with_the_failure_queue(make_cfg, work_dir):
    cfg = make_cfg("query_rewriter", SMALL)
    VERBS["teach"](cfg)
    VERBS["train"](cfg)
    r1 = VERBS["evaluate"](cfg).results
    VERBS["calibrate"](cfg)
    assert not (work_dir / "query_rewriter/queue.jsonl").exists() or not load_queue(work_dir / "query_rewriter/queue.jsonl")

    # live traffic: train-split conversations never taught; this operating point sends every one to the teacher
    comp = routed(stage, cfg)
    comp.threshold = float("inf")
    live = load_rewrites("canard")["train"][8:14]
    for rec in live:
        assert comp(list(rec.history), rec.question)
    assert comp.stats()["n_teacher_calls"] == 6
    queued = load_queue(work_dir / "query_rewriter/queue.jsonl")
    assert len(queued) == 6 and {r.reason for r in queued} == {"routed"}

    round1 = VERBS["next-round"](cfg)
    assert (round1 / "student/config.json").is_file() and read_json(round1 / "results.json")["results"] == r1
    assert read_json(round1 / "round.json")["queue"] == {"routed": 6}

    cfg2 = make_cfg("query_rewriter", [*SMALL, "data.extra=queue", f"student.model={round1 / 'student'}"])
    taught = VERBS["teach"](cfg2)
    q = taught.details["queue"]
    assert q["records"] == 6 and q["already_taught"] == 0 and q["not_a_task"] == 0
    assert q["teacher_labels"] == {"cached": 6, "labelled": 0}  # all from the cache
    assert taught.teacher_calls == 0 and taught.cached == taught.details["teacher_labels"]["rewrite"]["cached"] + 6
    rows = read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")
    assert sum(bool(r.get("from_queue")) for r in rows) == q["kept"] > 0 and len(rows) == taught.kept + q["kept"]
    assert read_json(work_dir / "query_rewriter/teach/teach.json")["details"]["queue"]["kept"] == q["kept"]

    trained = VERBS["train"](cfg2)
    assert trained.details["student_model"] == str(round1 / "student") and trained.n_items == len(rows)
    r2 = VERBS["evaluate"](cfg2).results
    assert r2["student_base"]["recall_lift"] == pytest.approx(r1["student"]["recall_lift"])  # round 2 starts from round 1

    cmp = VERBS["compare-rounds"](cfg2)
    assert cmp["columns"] == ["teacher", "round 1", "round 2"] and cmp["caveat"] is None
    assert cmp["results"]["round 1"]["recall_lift"] == r1["student"]["recall_lift"]
    assert cmp["results"]["round 2"]["recall_lift"] == r2["student"]["recall_lift"]
    text = (work_dir / "query_rewriter/rounds/comparison.txt").read_text()
    assert "round 2 - round 1" in text and "recall_lift" in text

    # folding the same items again adds nothing: the kept ones are taught already, the others fail the filters again
    again = stage.add_training_examples(cfg2, [(r.input, r.teacher_output, r.template) for r in queued])
    assert again["already_taught"] == q["kept"] and again["kept"] == 0
    assert len(read_jsonl(work_dir / "query_rewriter/teach/train.jsonl")) == len(rows)


def test_next_round_needs_a_trained_student_and_compare_needs_rounds(make_cfg):
    from ragdistill.common.errors import RagdistillError

    cfg = make_cfg("query_rewriter", [])
    with pytest.raises(RagdistillError, match="no trained student to keep; run `ragdistill query_rewriter train` first"):
        VERBS["next-round"](cfg)
    with pytest.raises(RagdistillError, match="run `ragdistill query_rewriter evaluate` first"):
        VERBS["compare-rounds"](cfg)
