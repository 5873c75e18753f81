"""``pipeline.embedder=routed`` through the harness: two indexes (student and teacher encoders); each
query is answered from the student's, and from the teacher's when the margin of the student's two best
hits is below the threshold ``ragdistill embedder calibrate`` chose. Stats go into the report.

On the demo's SciFact slice (whose MPNet embeddings ship in data/labels/, so the teacher is a cache
read), the harness's corpus and queries are the embedder's own held-out slice: the harness must route
exactly the queries calibrate routed and reach the quality calibrate predicted.
"""

from __future__ import annotations

import json

import pytest

import ragdistill.e2e.config  # noqa: F401  (registers the e2e schema)
from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl, write_json
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.stage import get_stage
from ragdistill.e2e.cli import run_e2e
from ragdistill.e2e.report import summary_row

pytestmark = pytest.mark.usefixtures("one_thread")

SLICE = ["data.max_queries=40", "data.max_docs=150"]  # conf/demo.yaml's embedder slice: 40 test queries
# the embedder as the harness composes it: the packaged MiniLM as its student (linked, not trained), MPNet teacher
EMBEDDER = [*SLICE, "student.max_length=128", "routing.max_teacher_fraction=0.5"]


def _e2e_cfg(work_dir):
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "data=scifact", *SLICE, "pipeline.embedder=routed", "pipeline.reranker=off",
                          "pipeline.generator=off", "mteb=false", "run.report_to=[]"])
    cfg.stage_overrides = {"embedder": EMBEDDER}
    return cfg


def test_routed_embedder_in_the_harness(work_dir, link_student):
    stage = get_stage("embedder")
    link_student("embedder", "minilm-l6")
    cal = stage_verbs(stage)["calibrate"](compose("embedder", [f"paths.work_dir={work_dir}", "run.report_to=[]", *EMBEDDER]))
    assert cal["n"] == 40 and cal["signal"] == "margin" and 0 < cal["teacher_fraction"] <= 0.5
    routed_ids = {i["id"] for i in read_jsonl(work_dir / "embedder/calibrate/items.jsonl") if i["routed"]}
    queued = (work_dir / "embedder/queue.jsonl").read_text() if (work_dir / "embedder/queue.jsonl").exists() else ""

    out = run_e2e(_e2e_cfg(work_dir))
    rep = json.loads((out / "report.json").read_text())
    r = rep["result"]
    assert r["pipeline"] == {"rewriter": "off", "embedder": "routed", "reranker": "off", "generator": "off"}
    st = r["stages"]["embedder"]["routing"]
    assert st["signal"] == "margin" and st["threshold"] == pytest.approx(cal["threshold"])
    # the same queries over the same corpus with the same encoders: the queries calibrate routed, no others
    assert st["n_calls"] == 40 and st["n_teacher_calls"] == len(routed_ids) == round(cal["teacher_fraction"] * 40)
    assert st["teacher_fraction"] == pytest.approx(len(routed_ids) / 40)
    assert st["student_s"] > 0 and st["teacher_s"] > 0
    # and the routed ranking's NDCG@10 is the one calibrate predicted at its operating point
    assert r["retrieval"]["ndcg@10"] == pytest.approx(cal["quality"], abs=1e-4)
    assert r["latency"]["retrieve"]["n_items"] == 40
    assert r["stages"]["embedder"]["size_mb"] > 10  # the deployed (student) MiniLM, on disk
    assert len(list((work_dir / "e2e/index").glob("*.faiss"))) == 2  # one index per encoder
    html = (out / "report.html").read_text()
    assert "Routing (student first" in html
    assert summary_row(rep)["pipeline"].endswith(f"[embedder: {st['teacher_fraction']:.0%} to teacher]")
    # the routed first stage queues nothing (calibrate queued the held-out disagreements)
    after = (work_dir / "embedder/queue.jsonl").read_text() if (work_dir / "embedder/queue.jsonl").exists() else ""
    assert after == queued

    # a second run reuses both indexes: nothing is encoded again but the queries
    again = json.loads((run_e2e(_e2e_cfg(work_dir)) / "report.json").read_text())["result"]
    assert again["stages"]["embedder"]["routing"]["n_teacher_calls"] == st["n_teacher_calls"]
    assert again["retrieval"] == pytest.approx(r["retrieval"])


def test_routed_embedder_needs_a_calibration_on_a_score_signal(work_dir, link_student):
    link_student("embedder", "minilm-l6")
    with pytest.raises(RagdistillError, match=r"pipeline\.embedder=routed: .*no routing calibration; run `ragdistill embedder calibrate` first"):
        run_e2e(_e2e_cfg(work_dir))
    curve = work_dir / "embedder/calibrate/routing_curve.json"
    base = {"threshold": 0.1, "teacher_fraction": 0.1, "quality": 0.5, "random_quality": 0.5, "student_quality": 0.5,
            "teacher_quality": 0.6, "retention": 0.8, "target": {}, "target_met": True, "n": 10, "gain_over_random_auc": 0.0}
    write_json(curve, {**base, "signal": "neg_entropy"})  # a score signal the embedder does not calibrate on
    with pytest.raises(RagdistillError, match=r"pipeline\.embedder=routed: .*calibrated on signal 'neg_entropy'.*\(margin, top_score\)"):
        run_e2e(_e2e_cfg(work_dir))
    assert not (work_dir / "e2e" / "runs").exists()
