"""``ragdistill e2e swap=matrix`` on a tiny SQuAD slice with real models: all teacher, each stage alone
swapped to its student (and to its export, which this work dir lacks: recorded as a failed cell, the
matrix goes on), then all student; the table attributes quality lost and time saved to each swap.

The students are packaged models placed where ``train`` keeps them (``link_student``): the embedder's
MiniLM, the generator's SmolLM2-135M; the generator's teacher is SmolLM2-135M too (as in the
generator's own tests), the embedder's its default mpnet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ragdistill.e2e.config  # noqa: F401  (registers the e2e schema)
from ragdistill.common.config import compose
from ragdistill.e2e.cli import run_e2e
from ragdistill.e2e.swap import matrix_pipelines

pytestmark = pytest.mark.usefixtures("one_thread")

GEN = ["teacher.model=smollm2-135m-instruct", "teacher.max_new_tokens=12", "generator.student_max_new_tokens=12",
       "generator.prompt.max_context_chars=300"]


def test_matrix_pipelines_swap_one_active_slot_at_a_time() -> None:
    runs = matrix_pipelines({"rewriter": "off", "embedder": "student", "reranker": "teacher", "generator": "student"}, ["student", "student_onnx"])
    assert [name for name, *_ in runs] == ["all teacher", "embedder -> student", "embedder -> student_onnx", "reranker -> student",
                                           "reranker -> student_onnx", "generator -> student", "generator -> student_onnx", "all student"]
    assert all(p["rewriter"] == "off" for *_, p in runs)  # an off slot stays off
    assert runs[4][3] == {"rewriter": "off", "embedder": "teacher", "reranker": "student_onnx", "generator": "teacher"}


def test_swap_matrix_on_a_tiny_slice(work_dir: Path, link_student) -> None:
    link_student("embedder", "minilm-l6")
    link_student("generator", "smollm2-135m-instruct")
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "run.report_to=[]", "data.max_queries=2", "data.max_docs=12", "max_generate=2",
                          "retrieval.n_contexts=1", "mteb=false", "swap=matrix", "swap_variants=[student,student_onnx]",
                          "pipeline.rewriter=off", "pipeline.embedder=teacher", "pipeline.reranker=off", "pipeline.generator=teacher",
                          "+stage_overrides.generator=[" + ",".join(f"'{o}'" for o in GEN) + "]", f"out_dir={work_dir / 'matrix'}"])
    out = run_e2e(cfg)
    m = json.loads((out / "matrix.json").read_text())
    rows = {r["run"]: r for r in m["rows"]}
    assert list(rows) == ["all teacher", "embedder -> student", "embedder -> student_onnx", "generator -> student",
                          "generator -> student_onnx", "all student"]
    for name in ("embedder -> student_onnx", "generator -> student_onnx"):  # no export in this work dir: a failed cell, named
        assert "export` first" in rows[name]["error"], rows[name]
    base = rows["all teacher"]
    assert base["token_f1_lost"] == base["ndcg@10_lost"] == 0.0 and base["speedup"] == pytest.approx(1.0)
    for name in ("embedder -> student", "generator -> student", "all student"):
        r = rows[name]
        assert r["token_f1_lost"] == pytest.approx(base["token_f1"] - r["token_f1"])
        assert r["ndcg@10_lost"] == pytest.approx(base["ndcg@10"] - r["ndcg@10"])
        assert r["speedup"] == pytest.approx(base["per_query_ms"] / r["per_query_ms"]) and r["per_query_ms"] > 0
        assert (out / name.replace(" -> ", "-").replace(" ", "-") / "report.json").is_file()  # every run's own report
    assert rows["embedder -> student"]["pipeline"] == {"rewriter": "off", "embedder": "student", "reranker": "off", "generator": "teacher"}
    # the generator swap leaves retrieval as it was; the embedder swap changes only retrieval
    assert rows["generator -> student"]["ndcg@10"] == base["ndcg@10"]
    assert rows["embedder -> student"]["stage_speedup"] > 0 and rows["generator -> student"]["stage_speedup"] > 0
    text = (out / "matrix.txt").read_text()
    assert "swap matrix on squad: 2 held-out queries, 2 answered" in text and "failed:" in text
    assert (out / "swap_matrix.png").stat().st_size > 5000 and "swap_matrix.png" in (out / "matrix.html").read_text()
