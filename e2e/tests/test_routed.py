"""``pipeline.reranker=routed`` through the harness: the student reranks, the teacher takes the lists
the student is least sure of (threshold from ``ragdistill reranker calibrate``), stats in the report."""

from __future__ import annotations

import json

import pytest
from sentence_transformers import SentenceTransformer

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.e2e.cli import run_e2e
from ragdistill.e2e.report import summary_row

pytestmark = pytest.mark.usefixtures("one_thread")


# the reranker stage as the harness composes it: BM25 teacher, MiniLM cross-encoder student
RERANKER = ["teacher.backend=bm25", "teacher.model=squad", "student.max_length=48", "data.max_queries=12",
            "reranker.candidates.eval_k=10", "routing.max_teacher_fraction=0.5", "routing.queue_disagreement=1.0",
            "reranker.teach.shipped_labels=[]"]


class MiniLMEncoder:
    def __init__(self) -> None:
        self.model = SentenceTransformer(resolve_model("minilm-l6"))
        self.model.max_seq_length = 128
        self.model_path = resolve_model("minilm-l6")

    def __call__(self, texts, is_query):
        return self.model.encode(texts, normalize_embeddings=True, batch_size=32)


def _student(work_dir) -> None:
    """A real (undistilled: fresh head, 2 layers) MiniLM cross-encoder where train writes the student."""
    from ragdistill.reranker.students import new_cross_encoder

    new_cross_encoder("minilm-l6", 48, layers=2, seed=0).save_pretrained(str(work_dir / "reranker/train/student"))


def _e2e_cfg(work_dir):
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "data.max_queries=12", "data.max_docs=80", "pipeline.reranker=routed",
                          "pipeline.generator=off", "retrieval.rerank_k=10", "mteb=false", "run.report_to=[]"])
    cfg.stage_overrides = {"reranker": RERANKER}
    return cfg


def test_routed_reranker_in_the_harness(work_dir):
    from ragdistill.reranker import stage

    _student(work_dir)
    cal = stage_verbs(stage)["calibrate"](compose("reranker", [f"paths.work_dir={work_dir}", "run.report_to=[]", *RERANKER]))
    assert 0 <= cal["teacher_fraction"] <= 0.5
    out = run_e2e(_e2e_cfg(work_dir), custom={"embedder": MiniLMEncoder()})
    rep = json.loads((out / "report.json").read_text())
    r = rep["result"]
    assert r["pipeline"]["reranker"] == "routed" and r["after_rerank"] is not None
    st = r["stages"]["reranker"]["routing"]
    assert st["n_calls"] == 12 and st["signal"] == "margin" and st["threshold"] == pytest.approx(cal["threshold"])
    assert st["teacher_fraction"] == pytest.approx(st["n_teacher_calls"] / 12)
    assert st["student_s"] > 0 and (st["teacher_s"] > 0) == (st["n_teacher_calls"] > 0)
    assert r["stages"]["reranker"]["size_mb"] > 0  # the deployed (student) model
    queued = work_dir / "reranker/queue.jsonl"  # routed lists only: the untimed warm-up call queues nothing
    assert (len(queued.read_text().splitlines()) if queued.exists() else 0) == 10 * st["n_teacher_calls"]
    html = (out / "report.html").read_text()
    assert "Routing (student first" in html and "teacher fraction" in html
    assert summary_row(rep)["pipeline"].endswith(f"[reranker: {st['teacher_fraction']:.0%} to teacher]")


def test_routed_without_calibration_names_the_command(work_dir):
    _student(work_dir)
    with pytest.raises(RagdistillError, match=r"pipeline\.reranker=routed: .*no routing calibration; run `ragdistill reranker calibrate` first"):
        run_e2e(_e2e_cfg(work_dir), custom={"embedder": MiniLMEncoder()})
