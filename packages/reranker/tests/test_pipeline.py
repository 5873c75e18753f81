"""teach -> train -> export -> evaluate on a slice of SQuAD with real small models.

The teacher is a real cross-encoder built by ``build-teacher`` itself, made tiny (MiniLM base,
a few pairs, 32 tokens) so the tests never pay for the real mpnet teacher.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from ragdistill.common.cache import LabelCache
from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl

RECIPE = ["reranker.build_teacher.base=minilm-l6", "reranker.build_teacher.squad_queries=24", "reranker.build_teacher.negatives=1",
          "reranker.build_teacher.max_length=32", "reranker.build_teacher.freeze_layers=0", "reranker.build_teacher.batch_size=16",
          "reranker.build_teacher.learning_rate=5e-4", "reranker.build_teacher.epochs=1"]
SMALL = ["teacher=ce-mpnet", "teacher.max_length=32", "student.max_length=32", "data.max_queries=8",
         "reranker.candidates.train_k=5", "reranker.candidates.eval_k=6", "reranker.filter.min_margin=-100",
         "reranker.train.max_steps=4", "reranker.train.list_size=5", "reranker.train.queries_per_batch=4",
         "reranker.train.learning_rate=3e-4", "reranker.train.warmup_ratio=0", "reranker.colbert.dim=16",
         "reranker.colbert.doc_max_length=32", "reranker.colbert.query_max_length=12", "reranker.eval.latency_queries=1",
         "reranker.eval.latency_candidates=6", "reranker.eval.biencoders=[]", "reranker.export.parity_pairs=40",
         "reranker.labels_file=null"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    from ragdistill.reranker.teachers import build_teacher

    root = tmp_path_factory.mktemp("teacher")
    cfg = compose("reranker", [f"paths.work_dir={root}", "run.report_to=[]", *RECIPE, f"reranker.build_teacher.output_dir={root / 'ce'}"])
    return build_teacher(cfg)


def _cfg(make_cfg, teacher_dir, *extra):
    return make_cfg("reranker", [*RECIPE, f"reranker.build_teacher.output_dir={teacher_dir}", *SMALL, *extra])


def _scores(path, pairs):
    from ragdistill.reranker.students import load_cross_encoder, predict_raw

    return np.array(predict_raw(load_cross_encoder(str(path), 32), pairs))


def test_pipeline_end_to_end(make_cfg, work_dir, tiny_teacher):
    from ragdistill.reranker import stage

    cfg = _cfg(make_cfg, tiny_teacher)
    stats = stage.teach(cfg)
    assert stats["queries"] == 8 and stats["kept"] + stats["dropped_ambiguous"] == 8
    assert stats["teacher"].startswith("ce:ce-mpnet@")  # the recipe, not the local path
    rows = read_jsonl(work_dir / "reranker/teach/train.jsonl")
    from ragdistill.common.data import load_retrieval

    _, qrels = load_retrieval("squad", max_queries=8).split("train")
    assert all(r["doc_ids"][0] in qrels[r["query_id"]] and len(r["teacher_scores"]) == len(r["doc_ids"]) == 5 for r in rows)
    n_labels = len(LabelCache(cfg.paths.label_cache))
    assert n_labels == 40
    assert stage.teach(cfg)["pairs_scored"] == 40 and len(LabelCache(cfg.paths.label_cache)) == n_labels  # all from cache

    summary = stage.train(cfg)
    assert summary["cross_encoder"]["steps"] == 4 and summary["colbert"]["steps"] == 4
    log = summary["cross_encoder"]["log"]
    assert {"MarginMSELoss", "ListwiseKLLoss"} <= set().union(*log) or summary["cross_encoder"]["train_loss"] > 0
    # distillation moved the student towards the teacher on the training pairs
    from ragdistill.common.data import load_retrieval as lr

    corpus = lr("squad", max_queries=8).corpus
    pairs = [(r["query"], corpus[d].full_text) for r in rows for d in r["doc_ids"]]
    teacher = np.array([s for r in rows for s in r["teacher_scores"]])
    base = _scores(work_dir / "reranker/train/student_base", pairs)
    student = _scores(work_dir / "reranker/train/student", pairs)
    assert spearmanr(student, teacher).statistic > spearmanr(base, teacher).statistic

    exp = stage.export(cfg)
    assert exp["onnx_fp32"]["spearman"] >= 0.99
    assert 0.5 < exp["onnx_int8"]["spearman"] <= 1.0
    assert exp["sizes_mb"]["model_qint8_avx512_vnni.onnx"] < exp["sizes_mb"]["model.onnx"] / 2
    import onnxruntime as ort

    sess = ort.InferenceSession(str(work_dir / "reranker/export/cross_encoder/onnx/model_qint8_avx512_vnni.onnx"))
    assert {i.name for i in sess.get_inputs()} >= {"input_ids", "attention_mask"}
    assert (work_dir / "reranker/export/colbert/index_vectors.npy").is_file()

    payload = stage.evaluate(cfg)
    res = payload["results"]
    for system in ("teacher", "student_base", "student", "student_onnx", "student_onnx_int8", "colbert", "colbert_base", "ref_first_stage_bm25"):
        assert 0.0 <= res[system]["ndcg@10"] <= 1.0, system
    for system in ("teacher", "student", "student_onnx_int8", "colbert"):
        assert res[system]["pairs_per_s"] > 0 and res[system]["p95_ms"] >= res[system]["p50_ms"] > 0
    assert res["colbert"]["index_mb"] > 0
    saved = json.loads((work_dir / "reranker/evaluate/results.json").read_text())
    assert saved["results"]["student"] == res["student"] and saved["queries"] == 8

    # the harness's colbert variant scores the way evaluate's ColBERT row does (same MaxSim, texts encoded on the fly)
    from ragdistill.reranker.colbert import ColbertIndex, ColbertStudent
    from ragdistill.reranker.component import component

    exported = work_dir / "reranker/export/colbert"
    index = ColbertIndex.load(exported)
    ids = index.doc_ids[:5]  # documents the export indexed (held-out candidates)
    query, docs = rows[0]["query"], [corpus[d].full_text for d in ids]
    from_index = index.scorer(ColbertStudent.load(exported))(query, ids)
    assert component(cfg, "colbert")(query, docs) == pytest.approx(from_index, rel=1e-2, abs=1e-2)
    assert component(cfg, "colbert_base")(query, docs) != pytest.approx(from_index, rel=1e-3)

    # ship the labels; another work dir where the teacher was never built reads them instead
    target = work_dir / "labels.jsonl"
    stage.extra["export-labels"](_cfg(make_cfg, tiny_teacher, f"reranker.labels_file={target}"))
    other = _cfg(make_cfg, work_dir / "not-built", f"reranker.labels_file={target}", f"paths.work_dir={work_dir / 'other'}")
    again = stage.teach(other)
    assert again["labels_imported"] == n_labels + 48 and again["teacher"] == stats["teacher"]
    assert read_jsonl(work_dir / "other/reranker/teach/train.jsonl") == rows


def test_missing_teacher_says_how_to_build(make_cfg, work_dir):
    from ragdistill.reranker import stage

    cfg = _cfg(make_cfg, work_dir / "nowhere")
    with pytest.raises(RagdistillError, match=r"teacher 'ce-mpnet' is not built yet .* `ragdistill reranker build-teacher`"):
        stage.teach(cfg)


def test_filter_dropping_everything_is_an_error(make_cfg, tiny_teacher):
    from ragdistill.reranker import stage

    cfg = _cfg(make_cfg, tiny_teacher, "reranker.filter.min_margin=1000", "data.max_queries=3")
    with pytest.raises(RagdistillError, match=r"dropped all 3 training queries \(reranker.filter.min_margin=1000"):
        stage.teach(cfg)


def test_wrong_teacher_backend(make_cfg):
    from ragdistill.reranker import stage

    with pytest.raises(RagdistillError, match=r"teacher.backend='causal_lm' generates text; the reranker distills \(query, document\) scores"):
        stage.teach(make_cfg("reranker", ["teacher=qwen-0.5b", "data.max_queries=2"]))


def test_hybrid_teacher_labels_the_same_locally_and_on_ray(tmp_path, tiny_teacher):
    """The default teacher (mpnet cosine + BM25, an ensemble of scoring teachers) through teach, once
    in this process and once on Ray Data workers: same teacher id, same kept lists, same scores."""
    ray = pytest.importorskip("ray")
    from ragdistill.common.config import compose
    from ragdistill.reranker import stage

    small = ["run.report_to=[]", "teacher=hybrid-mpnet-bm25", "teacher.members.0.max_length=64", "data.max_queries=3",
             "reranker.candidates.train_k=4", "reranker.labels_file=null"]
    local = stage.teach(compose("reranker", [*small, f"paths.work_dir={tmp_path / 'local'}"]))
    assert '"bm25:squad"' in local["teacher"] and "st:mpnet" in local["teacher"]
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        on_ray = stage.teach(compose("reranker", [*small, f"paths.work_dir={tmp_path / 'ray'}", "run.launcher=ray", "ray.num_workers=1"]))
        with pytest.raises(RagdistillError, match=r"run.launcher=ray: the teacher 'ce-mpnet' exists only on this machine"):
            stage.teach(compose("reranker", [*RECIPE, f"reranker.build_teacher.output_dir={tiny_teacher}", *SMALL,
                                             f"paths.work_dir={tmp_path / 'built'}", "run.launcher=ray"]))
    finally:
        ray.shutdown()
    assert on_ray["teacher"] == local["teacher"] and on_ray["kept"] == local["kept"]
    rows_local = read_jsonl(tmp_path / "local/reranker/teach/train.jsonl")
    rows_ray = read_jsonl(tmp_path / "ray/reranker/teach/train.jsonl")
    assert [r["doc_ids"] for r in rows_local] == [r["doc_ids"] for r in rows_ray]
    assert np.allclose([s for r in rows_local for s in r["teacher_scores"]], [s for r in rows_ray for s in r["teacher_scores"]], atol=1e-5)
