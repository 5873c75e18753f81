"""teach -> train -> export -> evaluate on a small slice of SciFact with the real packaged models.

One module-scoped run (tiny max_length, a few steps) shared by the assertions below; the
bad-input tests reuse its teach artifacts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.embedder import stage

SMALL = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.negatives_per_query=2", "embedder.batch_size=4", "embedder.max_steps=2", "embedder.eval_steps=1",
    "embedder.val_fraction=0.34", "embedder.matryoshka=[384,96]", "embedder.parity_texts=8",
    "embedder.speed_texts=8", "embedder.latency_queries=4", "embedder.loss=mse+mnrl+margin_mse",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("embedder")
    cfg = compose("embedder", [f"paths.work_dir={work}", *SMALL])
    out = {verb: stage.verbs[verb](cfg) for verb in ("teach", "train", "export", "evaluate")}
    return work, cfg, out


def test_teach_writes_teacher_embeddings_and_mined_triples(run):
    work, _, out = run
    d = work / "embedder" / "teach"
    with np.load(d / "teacher_embeddings.npz") as z:
        assert z["doc_emb"].shape == (24, 768) and z["query_emb"].shape[1] == 768
        assert np.allclose(np.linalg.norm(z["doc_emb"], axis=1), 1.0, atol=1e-4)
    triples = read_jsonl(d / "triples.jsonl")
    assert triples and out["teach"]["n_triples"] == len(triples)
    from ragdistill.common.data import load_retrieval

    train_qrels = load_retrieval("scifact", 6, 24).split("train")[1]
    for t in triples:
        assert t["neg_id"] not in train_qrels[t["query_id"]] and t["pos_id"] in train_qrels[t["query_id"]]
        assert t["neg_score"] < t["pos_score"] - 0.05 + 1e-6  # the margin filter held


def test_train_keeps_best_checkpoint_and_history(run):
    work, _, _ = run
    summary = read_json(work / "embedder" / "train" / "train.json")
    assert summary["losses"] == {"mse": 1.0, "mnrl": 1.0, "margin_mse": 1.0}
    assert summary["projection"] == "learned" and summary["matryoshka"] == [384, 96]
    assert [h["step"] for h in summary["history"]] == [0, 1, 2]
    assert all(0.0 <= h["val_ndcg@10"] <= 1.0 for h in summary["history"])
    assert summary["best"]["val_ndcg@10"] == max(h["val_ndcg@10"] for h in summary["history"][1:])
    assert (work / "embedder" / "train" / "model" / "config_sentence_transformers.json").exists()
    assert (work / "embedder" / "train" / "projection.safetensors").exists()
    assert not (work / "embedder" / "train" / "checkpoints").exists()


def test_export_loads_with_onnx_backend_and_keeps_parity(run):
    from sentence_transformers import SentenceTransformer

    work, _, out = run
    assert out["export"]["passed"] and out["export"]["parity"]["student_onnx"]["mean_cosine"] > 0.999
    assert out["export"]["parity"]["student_onnx_int8"]["mean_cosine"] >= 0.99
    path = work / "embedder" / "export" / "onnx_model"
    fp32 = SentenceTransformer(str(path), backend="onnx")
    int8 = SentenceTransformer(str(path), backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})
    a, b = fp32.encode(["a claim about cells"]), int8.encode(["a claim about cells"])
    assert a.shape == b.shape == (1, 384)
    assert float((a @ b.T)[0, 0]) > 0.98
    assert out["export"]["files"]["student_onnx_int8"]["size_mb"] < out["export"]["files"]["student_onnx"]["size_mb"] / 2


def test_evaluate_reports_every_system_per_dim_with_mteb_json(run):
    work, _, out = run
    results = out["evaluate"]["results"]
    assert list(results) == ["teacher", "student_base", "student", "student_onnx", "student_onnx_int8"]
    for name, r in results.items():
        for m in ("ndcg@10", "mrr@10", "recall@100", "ndcg@10 d=96", "mteb_ndcg@10"):
            assert 0.0 <= r[m] <= 1.0, (name, m)
        assert r["queries_per_s"] > 0 and r["query_p95_ms"] >= r["query_p50_ms"] > 0
        # MTEB's evaluator on the same embeddings agrees with ours
        assert r["mteb_ndcg@10"] == pytest.approx(r["ndcg@10"], abs=0.02), name
    assert results["teacher"]["dim"] == 768 and results["student"]["dim"] == 384
    # SciFact is MTEB's own task: its definition scored on the bundled copy (a slice here, so not leaderboard-comparable)
    mteb_file = json.loads((work / "embedder" / "evaluate" / "mteb" / "student" / "SciFact.json").read_text())
    assert mteb_file["task_name"] == "SciFact" and "ndcg_at_10" in mteb_file["scores"]["test"][0]
    saved = read_json(work / "embedder" / "evaluate" / "results.json")
    assert saved["mteb_task"] == {"name": "SciFact", "standard": True, "full_split": False}
    assert saved["results"]["student"]["ndcg@10"] == results["student"]["ndcg@10"]
    assert (work / "embedder" / "evaluate" / "results.txt").read_text().count("student_onnx_int8") == 1


def test_local_and_standard_mteb_tasks_load_no_data_and_a_wrong_task_name_is_clear():
    from ragdistill.common.data import Document
    from ragdistill.embedder.mteb_task import make_task

    corpus, queries, qrels = {"d1": Document("d1", "a text")}, {"q1": "a query"}, {"q1": {"d1": 1}}
    local = make_task("ragdistill-x-test", corpus, queries, qrels)
    assert local.metadata.name == "ragdistill-x-test" and local.data_loaded
    std = make_task("ignored", corpus, queries, qrels, standard="SciFact")
    assert std.metadata.name == "SciFact" and std.metadata.dataset["path"] == "mteb/scifact"
    assert std.dataset["default"]["test"]["relevant_docs"] == {"q1": {"d1": 1}}
    with pytest.raises(RagdistillError, match=r"data.mteb_task='SciFakt' is not an MTEB task"):
        make_task("x", corpus, queries, qrels, standard="SciFakt")
    with pytest.raises(RagdistillError, match=r"not retrieval on split 'train'"):
        make_task("x", corpus, queries, qrels, split="train", standard="SciFact")


def test_component_and_first_stage_helper(run):
    from ragdistill.common.data import load_retrieval
    from ragdistill.embedder.retrieve import dense_retrieve

    _, cfg, _ = run
    encode = stage.component(cfg, "student_onnx")
    data = load_retrieval("scifact", 6, 24)
    queries, _ = data.split("test")
    run_ = dense_retrieve(data.corpus, queries, lambda texts: encode(texts, is_query=False), top_k=5)
    assert set(run_) == set(queries) and all(len(v) == 5 for v in run_.values())


def test_student_dim_mismatch_without_projection_is_a_clear_error(run):
    work, _, _ = run
    cfg = compose("embedder", [f"paths.work_dir={work}", *SMALL, "embedder.projection=none"])
    with pytest.raises(RagdistillError, match=r"embeds in 384 dims but the teacher's embeddings have 768.*embedder\.projection=learned"):
        stage.train(cfg)


def test_bad_settings_name_the_key(run):
    work, _, _ = run
    for override, message in [
        ("embedder.loss=mse+kl", r"embedder.loss='mse\+kl': unknown component\(s\) \['kl'\]"),
        ("embedder.matryoshka=[512,64]", r"embedder.matryoshka=\[512, 64\]: dims \[512\] are not in 1..384"),
    ]:
        with pytest.raises(RagdistillError, match=message):
            stage.train(compose("embedder", [f"paths.work_dir={work}", *SMALL, override]))


def test_missing_artifacts_and_malformed_triples(tmp_path, run):
    work, _, _ = run
    with pytest.raises(RagdistillError, match=r"run `ragdistill embedder train` first"):
        stage.export(compose("embedder", [f"paths.work_dir={tmp_path}", *SMALL]))
    teach = tmp_path / "bad" / "embedder" / "teach"
    teach.mkdir(parents=True)
    for f in ("teacher_embeddings.npz", "teach.json"):
        (teach / f).write_bytes((work / "embedder" / "teach" / f).read_bytes())
    (teach / "triples.jsonl").write_text('{"query_id": "1", "pos_id": "2", "neg_id": "3"}\n{"query_id": "1", "pos_id": \n')
    with pytest.raises(RagdistillError, match=r"triples.jsonl:2: malformed JSON line"):
        stage.train(compose("embedder", [f"paths.work_dir={tmp_path / 'bad'}", *SMALL]))


def test_empty_corpus_is_a_clear_error(tmp_path):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("")
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    cfg = compose("embedder", [f"paths.work_dir={tmp_path / 'w'}", "run.report_to=[]", f"data.path={beir}"])
    with pytest.raises(RagdistillError, match=r"corpus.jsonl: the corpus is empty"):
        stage.teach(cfg)
