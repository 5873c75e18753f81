"""query_rewriter calibrate, the routed component and the monitor baseline with real models, through
the shared operations (``common.ops``) on the stage's hooks: the SmolLM2-135M student (here
undistilled, linked where ``train`` keeps the student) against the packaged Qwen2.5-0.5B teacher,
whose rewrites of the held-out CANARD records ship in ``data/labels/query_rewriter.jsonl``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.common.answer_metrics import rouge_l, token_f1
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.common.ops import routed, write_monitor_baseline
from ragdistill.common.ops.failure_queue import load_queue
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.query_rewriter import stage

pytestmark = pytest.mark.usefixtures("one_thread")
CALIBRATE = stage_verbs(stage)["calibrate"]


@pytest.fixture
def student_dir(link_student):
    return link_student("query_rewriter", "smollm2-135m-instruct")


def test_calibrate_on_held_out_records_and_route(make_cfg, work_dir, student_dir):
    from ragdistill.query_rewriter.examples import test_set
    from ragdistill.query_rewriter.labels import label_teacher_id, task_template

    cfg = make_cfg("query_rewriter", ["query_rewriter.evaluate.test_records=4", "routing.max_teacher_fraction=0.25", "run.torch_threads=1",
                                      "routing.queue_disagreement=0.0"])  # every record the student rewrites differently is queued
    out = CALIBRATE(cfg)
    assert out["n"] == 4 and out["signal"] == "sequence_logprob" and out["quality_metric"] == "recall_lift"
    assert out["teacher_fraction"] <= 0.25 and out["quality"] >= out["student_quality"]
    d = json.loads((work_dir / "query_rewriter/calibrate/routing_curve.json").read_text())
    assert d["curve"][0]["quality"] == pytest.approx(out["student_quality"]) and d["curve"][-1]["quality"] == pytest.approx(out["teacher_quality"])
    assert (work_dir / "query_rewriter/calibrate/routing_curve.png").is_file()
    items = read_jsonl(work_dir / "query_rewriter/calibrate/items.jsonl")
    assert [i["id"] for i in items] == [r.id for r in test_set(cfg).records] and all(r["confidence"] < 0 for r in items)
    assert np.mean([r["student_quality"] for r in items]) == pytest.approx(out["student_quality"])
    # the teacher's rewrites come from the shipped labels: their lift is the recorded one, per record
    records = stage.held_out(cfg)
    teacher = stage.predictor(cfg, "teacher")(records)
    assert [i["teacher_quality"] for i in items] == pytest.approx(stage.quality(cfg, records, teacher))
    assert stage.quality(cfg, records, [r["question"] for r in records]) == [0.0] * 4  # the raw question: no lift

    # a queued disagreement carries the teach payload (the conversation text) under teach's cache key
    assert out["queued_inputs"] == sum(i["disagreement"] > 0.0 for i in items) >= 1  # the undistilled student rewrites differently
    recs = load_queue(work_dir / "query_rewriter/queue.jsonl")
    assert len(recs) == out["queued_labels"] == out["queued_inputs"] and {r.reason for r in recs} == {"disagreement"}
    assert {r.template for r in recs} == {task_template(cfg, "rewrite")} and {r.teacher_id for r in recs} == {label_teacher_id(cfg.teacher)}
    sources = {e.source for e in test_set(cfg).examples}
    assert all(r.input in sources and r.input.rstrip().splitlines()[-1].startswith("Follow-up question:") for r in recs)

    # the routed component on one held-out record; the teacher's rewrite comes from the cache
    comp = routed(stage, cfg)
    rec = records[0]
    q = comp(rec["history"], rec["question"])
    st = comp.stats()
    (raw,), (conf,) = stage.scorer(cfg, "sequence_logprob")([rec])
    assert np.isfinite(conf) and st["n_calls"] == 1 and st["n_teacher_calls"] == int(conf < d["threshold"])
    assert q == stage.as_output(teacher[0] if conf < d["threshold"] else raw, rec)
    t = stage.teacher(cfg)
    assert t.label([stage.queue_examples(cfg, rec, teacher[0])[0][0]], task_template(cfg, "rewrite")).labelled == 0  # cached
    assert not t.loaded  # no teacher model was needed
    t.close()


def test_a_signal_of_another_stage_is_a_config_error(make_cfg, student_dir):
    with pytest.raises(RagdistillError, match=r"routing.signal='margin': the query_rewriter routes on sequence_logprob"):
        CALIBRATE(make_cfg("query_rewriter", ["routing.signal=margin"]))


def test_monitor_baseline_from_held_out_records(make_cfg, work_dir, student_dir):
    cfg = make_cfg("query_rewriter", ["monitor.baseline_inputs=2", "run.torch_threads=1"])
    base = write_monitor_baseline(stage, cfg)
    saved = read_json(work_dir / "query_rewriter/export/monitor_baseline.json")
    assert saved["stage"] == "query_rewriter" and saved["metrics"]["n"] == 2 == base["metrics"]["n"]
    assert saved["source"] == "held-out test: 2 inputs"
    # the divergence is 1 - ROUGE-L of the cleaned student and teacher rewrites of the first two test records
    records = stage.held_out(cfg, 2)
    s = [stage.as_output(o, r) for o, r in zip(stage.predictor(cfg, "student")(records), records, strict=True)]
    t = [stage.as_output(o, r) for o, r in zip(stage.predictor(cfg, "teacher")(records), records, strict=True)]
    assert saved["divergence"] == pytest.approx(1 - np.mean([rouge_l(a, [b]) for a, b in zip(s, t, strict=True)]))
    assert saved["metrics"]["token_f1_agreement"] == pytest.approx(np.mean([token_f1(a, [b]) for a, b in zip(s, t, strict=True)]))
