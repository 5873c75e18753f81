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
from ragdistill.common.ops.verbs import stage_verbs

RECIPE = ["reranker.build_teacher.base=minilm-l6", "reranker.build_teacher.squad_queries=24", "reranker.build_teacher.negatives=1",
          "reranker.build_teacher.max_length=32", "reranker.build_teacher.freeze_layers=0", "reranker.build_teacher.batch_size=16",
          "reranker.build_teacher.learning_rate=5e-4", "reranker.build_teacher.epochs=1"]
SMALL = ["teacher=ce-mpnet", "teacher.max_length=32", "student.max_length=32", "data.max_queries=8",
         "reranker.candidates.train_k=5", "reranker.candidates.eval_k=6", "reranker.teach.filter.min_margin=-100",
         "reranker.train.args.max_steps=4", "reranker.train.list_size=5", "reranker.train.queries_per_batch=4",
         "reranker.train.args.learning_rate=3e-4", "reranker.train.args.warmup_ratio=0", "reranker.train.args.logging_steps=1",
         "reranker.train.colbert.dim=16", "reranker.train.colbert.doc_max_length=32", "reranker.train.colbert.query_max_length=12",
         "reranker.evaluate.latency_queries=1", "reranker.evaluate.latency_candidates=6", "reranker.evaluate.biencoders=[]",
         "reranker.export.parity_pairs=40", "reranker.teach.shipped_labels=[]", "reranker.export.colbert_index_scope=candidates",
         "reranker.export.colbert_nbits=2"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    from ragdistill.reranker import stage

    root = tmp_path_factory.mktemp("teacher")
    cfg = compose("reranker", [f"paths.work_dir={root}", "run.report_to=[]", *RECIPE, f"reranker.build_teacher.output_dir={root / 'ce'}"])
    return stage_verbs(stage)["build-teacher"](cfg)


def _cfg(make_cfg, teacher_dir, *extra):
    return make_cfg("reranker", [*RECIPE, f"reranker.build_teacher.output_dir={teacher_dir}", *SMALL, *extra])


def _scores(path, pairs):
    from ragdistill.reranker.students import load_cross_encoder, predict_raw

    return np.array(predict_raw(load_cross_encoder(str(path), 32), pairs))


def test_pipeline_end_to_end(make_cfg, work_dir, tiny_teacher):
    from ragdistill.common.data import load_retrieval
    from ragdistill.reranker import stage

    verbs = stage_verbs(stage)
    cfg = _cfg(make_cfg, tiny_teacher)
    taught = verbs["teach"](cfg)
    d = taught.details
    assert taught.n_items == d["queries"] == 8 and d["kept"] + d["dropped_ambiguous"] == 8 and taught.kept == d["kept"]
    assert d["teacher"].startswith("ce:ce-mpnet@")  # the recipe, not the local path
    assert (taught.teacher_calls, taught.cached) == (40, 0) and d["pairs_scored"] == 40
    saved = json.loads((work_dir / "reranker/teach/teach.json").read_text())
    assert saved["teacher_calls"] == 40 and saved["details"]["kept"] == d["kept"]
    assert sorted(p.name for p in (work_dir / "reranker/teach").iterdir()) == ["config.yaml", "teach.json", "train.jsonl"]
    rows = read_jsonl(work_dir / "reranker/teach/train.jsonl")
    _, qrels = load_retrieval("squad", max_queries=8).split("train")
    assert all(r["doc_ids"][0] in qrels[r["query_id"]] and len(r["teacher_scores"]) == len(r["doc_ids"]) == 5 for r in rows)
    assert len(LabelCache(cfg.paths.label_cache)) == 40
    again = verbs["teach"](cfg)
    assert (again.teacher_calls, again.cached) == (0, 40) and len(LabelCache(cfg.paths.label_cache)) == 40  # all from cache

    trained = verbs["train"](cfg)
    assert trained.train_steps == 4 and trained.details["colbert"]["steps"] == 4 and trained.n_items == len(rows)
    assert trained.student == str(work_dir / "reranker/train/student")
    logged = set().union(*trained.details["cross_encoder"]["log"])
    assert {"kd_margin_mse", "kd_listwise_kl", "sup_ce"} <= logged  # each part of the weighted loss is logged
    assert sorted(p.name for p in (work_dir / "reranker/train").iterdir()) == [
        "colbert", "colbert_base", "config.yaml", "student", "student_base", "train.json"]  # no summary files, no temp dirs
    # distillation moved the student towards the teacher's order within each training list (what a
    # reranker is for; scores pooled across queries are not comparable and made this check flaky)
    corpus = load_retrieval("squad", max_queries=8).corpus
    pairs = [(r["query"], corpus[d].full_text) for r in rows for d in r["doc_ids"]]
    base = _scores(work_dir / "reranker/train/student_base", pairs)
    student = _scores(work_dir / "reranker/train/student", pairs)

    def per_list(scores):
        starts = np.cumsum([0] + [len(r["doc_ids"]) for r in rows])
        return np.mean([spearmanr(scores[a:b], r["teacher_scores"]).statistic for r, a, b in zip(rows, starts[:-1], starts[1:], strict=True)])

    assert per_list(student) > per_list(base) + 0.1

    exp = verbs["export"](cfg)
    model = work_dir / "reranker/export/model"
    assert exp.model == str(model) and exp.n_items == 40
    fp32, int8 = exp.variants["onnx_fp32"], exp.variants["onnx_int8"]
    assert fp32.parity >= 0.99 and not fp32.quantized and fp32.path == str(model / "onnx/model.onnx")
    assert int8.quantized and int8.parity >= cfg.reranker.export.min_parity_quantized and exp.details["gate"]["failed"] == []
    assert int8.size_mb < fp32.size_mb / 2 and exp.details["sizes_mb"]["model_qint8.onnx"] == int8.size_mb
    assert int8.path == str(model / "onnx/model_qint8.onnx") and exp.details["onnx_int8"]["quantization_preset"] == "avx512_vnni"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model / "onnx/model_qint8.onnx"))
    assert {i.name for i in sess.get_inputs()} >= {"input_ids", "attention_mask"}
    # the export ranks as trained: the library's default predict() returns the student's raw logits
    # (saved with activation_fn=Identity; a sigmoid would squash them), in torch and in ONNX fp32
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf = AutoModelForSequenceClassification.from_pretrained(work_dir / "reranker/train/student").eval()
    tok = AutoTokenizer.from_pretrained(work_dir / "reranker/train/student")
    with torch.no_grad():
        logits = hf(**tok([q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=32, padding=True,
                          return_tensors="pt")).logits.view(-1).numpy()
    assert np.allclose(CrossEncoder(str(model), max_length=32).predict(pairs), logits, atol=1e-4)
    onnx_fp32 = CrossEncoder(str(model), max_length=32, backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"})
    assert np.allclose(onnx_fp32.predict(pairs), logits, atol=1e-3)
    colbert_export = work_dir / "reranker/export/colbert"
    assert exp.details["colbert"]["library"] == "colbert-ai PLAID" and exp.details["colbert"]["dim"] == 16  # reranker.train.colbert.dim
    assert (colbert_export / "artifact.metadata").is_file() and (colbert_export / "index/metadata.json").is_file()
    assert exp.details["monitor_baseline"]["n"] == 8  # the shared export step measured the held-out lists
    assert sorted(p.name for p in (work_dir / "reranker/export").iterdir()) == [
        "colbert", "config.yaml", "export.json", "model", "monitor_baseline.json"]

    evaluated = verbs["evaluate"](cfg)
    res = evaluated.results
    assert evaluated.n_items == 8 and evaluated.split == "test" and evaluated.teacher_calls == 0  # export's baseline labelled them
    students = ("student_base", "student", "student_onnx", "student_onnx_int8", "colbert", "colbert_base")
    assert {"teacher", *students, *(f"{s}+fusion" for s in students), "ref_first_stage_bm25"} == set(res)
    # a "+fusion" row: the student's stored scores of each list fused with BM25's (evaluate.fusion_weight 0.5)
    from ragdistill.common.fusion import fuse
    from ragdistill.common.metrics import evaluate_run
    from ragdistill.reranker.candidates import candidate_sources
    from ragdistill.reranker.lists import load_data

    data = load_data(cfg)
    cands, qrels = candidate_sources(cfg, data, "test")[""][0], data.split("test")[1]
    stored = json.loads((work_dir / "reranker/evaluate/scores/student.json").read_text())["scores"]
    fused = {q: dict(zip(c.doc_ids, fuse([stored[q][d] for d in c.doc_ids], c.scores, 0.5), strict=True)) for q, c in cands.items()}
    assert evaluate_run({q: qrels[q] for q in cands}, fused, ("ndcg@10",))["ndcg@10"] == pytest.approx(res["student+fusion"]["ndcg@10"])
    assert evaluated.details["fusion_weight"] == 0.5
    assert res["student_onnx"]["ndcg@10"] == pytest.approx(res["student"]["ndcg@10"], abs=1e-9)  # fp32 keeps the ranking
    for system in ("teacher", "student", "student_onnx_int8", "colbert"):
        assert res[system]["pairs_per_s"] > 0 and res[system]["p95_ms"] >= res[system]["p50_ms"] > 0
    assert res["colbert"]["index_mb"] > 0
    saved = json.loads((work_dir / "reranker/evaluate/results.json").read_text())
    assert saved["results"]["student"] == res["student"] and saved["n_items"] == 8 and saved["details"]["queries"] == 8
    # the hooks calibrate and the monitor use score the same lists as evaluate did
    records = stage.held_out(cfg)
    assert len(records) == 8 and all(len(r["docs"]) == len(r["doc_ids"]) == 6 for r in records)
    t_out = stage.predictor(cfg, "teacher")(records)
    s_out, conf = stage.scorer(cfg, "margin")(records)
    assert np.mean(stage.quality(cfg, records, t_out)) == pytest.approx(res["teacher"]["ndcg@10"])
    assert np.mean(stage.quality(cfg, records, s_out)) == pytest.approx(res["student"]["ndcg@10"])
    assert conf == pytest.approx([sorted(o)[-1] - sorted(o)[-2] for o in s_out])

    # the harness's colbert variant reranks through the export's PLAID index when the candidates are indexed
    # documents, and agrees with exact MaxSim on the fly (PLAID keeps 2-bit residuals: close, not equal)
    from ragdistill.reranker.colbert import ColbertStudent, PlaidIndex

    index = PlaidIndex.load(colbert_export / "index", colbert_export)
    ids = index.doc_ids[:5]  # documents the export indexed (held-out candidates)
    query, docs = rows[0]["query"], [corpus[d].full_text for d in ids]
    harness = stage.component(cfg, "colbert")
    from_index = harness(query, docs)
    assert harness.stats() == {"index_calls": 1, "on_the_fly_calls": 0} and from_index == index.rerank(query, ids)
    student = ColbertStudent.load(colbert_export)
    exact = student.score_pairs(query, docs)
    assert student.memo_scorer(dict(zip(ids, docs, strict=True)))(query, ids) == pytest.approx(exact, abs=1e-4)  # evaluate's colbert_base path
    assert np.allclose(from_index, exact, atol=0.25 * len(ids))
    assert harness(query, ["a passage nobody indexed"]) and harness.stats()["on_the_fly_calls"] == 1
    # an id of another dataset (or a changed text) is not taken for the indexed document
    assert index.ids_of_texts({ids[0]: docs[0], ids[1]: "another dataset's text under the same id"}) == {docs[0]: ids[0]}
    assert stage.component(cfg, "colbert_base")(query, docs) != pytest.approx(exact, rel=1e-3)

    # ship the labels; another work dir where the teacher was never built reads them instead
    target = work_dir / "labels.jsonl"
    assert verbs["export-labels"](_cfg(make_cfg, tiny_teacher, f"reranker.teach.export_labels_to={target}")) == target
    assert len(read_jsonl(target)) == 40 + 48  # the train lists' pairs and the held-out lists' (8 x 6)
    other = _cfg(make_cfg, work_dir / "not-built", f"reranker.teach.shipped_labels=['{target}']", f"paths.work_dir={work_dir / 'other'}")
    shipped = verbs["teach"](other)
    assert (shipped.teacher_calls, shipped.cached) == (0, 40) and shipped.details["teacher"] == d["teacher"]
    assert len(LabelCache(other.paths.label_cache)) == 88  # the whole file imported
    assert read_jsonl(work_dir / "other/reranker/teach/train.jsonl") == rows


def test_older_int8_file_names_still_load(tmp_path):
    """Exports made before the int8 file was named for what it is (``model_qint8_<preset>.onnx``) are still found."""
    from ragdistill.reranker.students import int8_file

    (tmp_path / "onnx").mkdir()
    assert int8_file(tmp_path) is None
    (tmp_path / "onnx/model_qint8_avx512_vnni.onnx").write_bytes(b"old")
    assert int8_file(tmp_path) == "onnx/model_qint8_avx512_vnni.onnx"
    (tmp_path / "onnx/model_qint8.onnx").write_bytes(b"new")
    assert int8_file(tmp_path) == "onnx/model_qint8.onnx"


def test_missing_teacher_says_how_to_build(make_cfg, work_dir):
    from ragdistill.reranker import stage

    cfg = _cfg(make_cfg, work_dir / "nowhere")
    with pytest.raises(RagdistillError, match=r"teacher 'ce-mpnet' is not built yet .* `ragdistill reranker build-teacher`"):
        stage.teach(cfg)


def test_filter_dropping_everything_is_an_error(make_cfg, tiny_teacher):
    from ragdistill.reranker import stage

    cfg = _cfg(make_cfg, tiny_teacher, "reranker.teach.filter.min_margin=1000", "data.max_queries=3")
    with pytest.raises(RagdistillError, match=r"dropped all 3 training queries \(reranker.teach.filter.min_margin=1000"):
        stage.teach(cfg)


def test_wrong_teacher_backend(make_cfg):
    from ragdistill.reranker import stage

    with pytest.raises(RagdistillError, match=r"teacher.backend='causal_lm' generates text; the reranker distills \(query, document\) scores"):
        stage.teach(make_cfg("reranker", ["teacher=qwen-0.5b", "data.max_queries=2"]))


def test_training_args_pass_through_and_a_wrong_key_is_named(make_cfg, work_dir):
    from ragdistill.reranker.train import training_args

    args = training_args(make_cfg("reranker", ["reranker.train.args.learning_rate=3e-4", "+reranker.train.args.lr_scheduler_type=cosine"]),
                         str(work_dir / "x"))
    assert args.learning_rate == 3e-4 and args.lr_scheduler_type == "cosine" and args.warmup_ratio == 0.1  # a default kept
    assert args.per_device_train_batch_size == 4 and args.save_strategy == "no"  # what the stage sets itself
    with pytest.raises(RagdistillError, match=r"reranker.train.args: learnig_rate \(did you mean learning_rate\?\)"):
        training_args(make_cfg("reranker", ["+reranker.train.args.learnig_rate=1"]), str(work_dir / "x"))


def test_hybrid_teacher_labels_the_same_locally_and_on_ray(tmp_path, tiny_teacher):
    """The default teacher (mpnet cosine + BM25, an ensemble of scoring teachers) through teach, once
    in this process and once on Ray Data workers: same teacher id, same kept lists, same scores."""
    ray = pytest.importorskip("ray")
    from ragdistill.reranker import stage

    small = ["run.report_to=[]", "teacher=hybrid-mpnet-bm25", "teacher.members.0.max_length=64", "data.max_queries=3",
             "reranker.candidates.train_k=4", "reranker.teach.shipped_labels=[]"]
    local = stage.teach(compose("reranker", [*small, f"paths.work_dir={tmp_path / 'local'}"]))
    assert '"bm25:squad"' in local.details["teacher"] and "st:mpnet" in local.details["teacher"]
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        on_ray = stage.teach(compose("reranker", [*small, f"paths.work_dir={tmp_path / 'ray'}", "run.launcher=ray", "ray.num_workers=1"]))
        with pytest.raises(RagdistillError, match=r"run.launcher=ray: the teacher 'ce-mpnet' is built on this machine only"):
            stage.teach(compose("reranker", [*RECIPE, f"reranker.build_teacher.output_dir={tiny_teacher}", *SMALL,
                                             f"paths.work_dir={tmp_path / 'built'}", "run.launcher=ray"]))
    finally:
        ray.shutdown()
    assert on_ray.details["teacher"] == local.details["teacher"] and on_ray.kept == local.kept
    assert on_ray.teacher_calls == local.teacher_calls == 12  # 3 lists x 4 candidates, labelled on the workers
    rows_local = read_jsonl(tmp_path / "local/reranker/teach/train.jsonl")
    rows_ray = read_jsonl(tmp_path / "ray/reranker/teach/train.jsonl")
    assert [r["doc_ids"] for r in rows_local] == [r["doc_ids"] for r in rows_ray]
    assert np.allclose([s for r in rows_local for s in r["teacher_scores"]], [s for r in rows_ray for s in r["teacher_scores"]], atol=1e-5)
