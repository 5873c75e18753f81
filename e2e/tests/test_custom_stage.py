"""A user's own stage plugs into the harness: any callable with the contract's signature."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import resolve_model
from ragdistill.common.pipeline import Encoder, Generator
from ragdistill.e2e.cli import run_e2e
from ragdistill.e2e.report import compare_runs


class MiniLMEncoder:
    def __init__(self):
        self.model = SentenceTransformer(resolve_model("minilm-l6"))
        self.model.max_seq_length = 128
        self.model_path = resolve_model("minilm-l6")

    def __call__(self, texts, is_query):
        return self.model.encode(texts, normalize_embeddings=True, batch_size=32)


def first_sentence(question: str, contexts: list[str]) -> str:
    """An extractive 'generator': the first sentence of the top passage."""
    return contexts[0].split(". ")[0] if contexts else ""


def test_custom_components_run_and_report(work_dir):
    enc = MiniLMEncoder()
    assert isinstance(enc, Encoder) and isinstance(first_sentence, Generator)
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "data.max_queries=12", "data.max_docs=80", "max_generate=5",
                          "pipeline.reranker=off", "run.report_to=[]"])
    out = run_e2e(cfg, custom={"embedder": enc, "generator": first_sentence})
    rep = json.loads((out / "report.json").read_text())
    r = rep["result"]
    assert r["n_queries"] == 12 and r["n_docs"] == 80
    assert 0.3 < r["retrieval"]["ndcg@10"] <= 1.0  # MiniLM on an 80-paragraph SQuAD slice
    assert r["retrieval"]["recall@100"] == pytest.approx(1.0)  # 80 docs < 100: everything is retrieved
    g = r["generation"]
    assert g["n_answers"] == 5 and 0.0 <= g["token_f1"] <= 1.0 and g["grounding"] == pytest.approx(1.0)
    assert r["latency"]["retrieve"]["n_items"] == 12 and r["latency"]["generator"]["n_items"] == 5
    assert (out / "report.html").exists() and (out / "latency_breakdown.png").stat().st_size > 1000
    assert rep["versions"]["torch"].startswith("2.13")
    # a second run reuses the cached faiss index
    cfg2 = compose("e2e", [f"paths.work_dir={work_dir}", "data.max_queries=12", "data.max_docs=80", "max_generate=5",
                           "pipeline.reranker=off", "run.report_to=[]", f"out_dir={work_dir}/run2"])
    out2 = run_e2e(cfg2, custom={"embedder": enc, "generator": lambda q, c: ""})
    table = compare_runs([out, out2], work_dir / "cmp")
    assert len(table.splitlines()) == 3 and (work_dir / "cmp" / "quality_vs_latency.png").exists()
    assert np.isclose(json.loads((out2 / "report.json").read_text())["result"]["generation"]["token_f1"], 0.0)


def test_embedder_cannot_be_off(work_dir):
    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "pipeline.embedder=off", "data.max_queries=2", "data.max_docs=20"])
    with pytest.raises(RagdistillError, match=r"pipeline\.embedder=off: the pipeline needs a retriever"):
        run_e2e(cfg)


def test_compare_needs_reports(tmp_path):
    with pytest.raises(RagdistillError, match="no report here; run `ragdistill e2e` first"):
        compare_runs([tmp_path])


def test_scifact_slice_scores_as_a_named_mteb_task_and_passes_titled_passages(work_dir):
    """``data=scifact`` (a data group with ``mteb_task``): MTEB scores the embedder on the local slice as a
    custom task named for the slice (only the full split carries MTEB's SciFact name), and the generator
    receives passages as plain strings that carry their document's title."""
    seen: list[list[str]] = []

    def record(question: str, contexts: list[str]) -> str:
        seen.append(contexts)
        return contexts[0][:20] if contexts else ""

    cfg = compose("e2e", [f"paths.work_dir={work_dir}", "data=scifact", "data.max_queries=6", "data.max_docs=40", "max_generate=2",
                          "pipeline.reranker=off", "run.report_to=[]"])
    out = run_e2e(cfg, custom={"embedder": MiniLMEncoder(), "generator": record})
    m = json.loads((out / "report.json").read_text())["result"]["mteb"]
    # a 6-question slice is never filed under MTEB's official SciFact: a custom task named for the slice
    assert m["task"] == "ragdistill-e2e-scifact-slice-6q-40d" and not m["standard_task"]
    assert m["results_file"].endswith(f"{m['task']}.json") and json.loads(open(m["results_file"]).read())["task_name"] == m["task"]
    assert 0.0 < m["mteb_ndcg@10"] <= 1.0
    assert seen and all(isinstance(c, str) and c.title for cs in seen for c in cs)


def test_rerank_fusion_brings_the_first_stage_scores_back(work_dir):
    """``retrieval.rerank_fusion``: a reranker that turns the first stage's list upside down, alone and
    fused with weight 1 (the first stage's own order comes back: same NDCG@10 as before reranking)."""
    enc = MiniLMEncoder()

    def upside_down(query: str, docs: list[str]) -> list[float]:
        return [float(i) for i in range(len(docs))]  # the first stage's last candidate first

    base = [f"paths.work_dir={work_dir}", "data.max_queries=12", "data.max_docs=80", "max_generate=0", "retrieval.rerank_k=10",
            "pipeline.generator=off", "run.report_to=[]"]
    res = {}
    for w in ("null", "1.0"):
        out = run_e2e(compose("e2e", [*base, f"retrieval.rerank_fusion={w}", f"out_dir={work_dir}/fusion-{w}"]),
                      custom={"embedder": enc, "reranker": upside_down})
        res[w] = json.loads((out / "report.json").read_text())["result"]
    assert res["null"]["after_rerank"]["ndcg@10"] < res["null"]["retrieval"]["ndcg@10"] - 0.1
    assert res["1.0"]["after_rerank"]["ndcg@10"] == pytest.approx(res["1.0"]["retrieval"]["ndcg@10"])
    assert (res["null"]["rerank_fusion"], res["1.0"]["rerank_fusion"]) == (None, 1.0)  # the report says which ran
    with pytest.raises(RagdistillError, match=r"fusion weight 2.0 .*must lie in \[0, 1\]"):
        run_e2e(compose("e2e", [*base, "retrieval.rerank_fusion=2.0", f"out_dir={work_dir}/fusion-bad"]),
                custom={"embedder": enc, "reranker": upside_down})
