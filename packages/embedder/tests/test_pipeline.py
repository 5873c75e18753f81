"""teach -> train -> export -> evaluate on a small slice of SciFact with the real packaged models.

One module-scoped run (tiny max_length, a few steps) shared by the assertions below; the
bad-input tests reuse its teach artifacts, the routing / monitor / rounds test a copy of its work dir.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json, read_jsonl
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import conf_dir
from ragdistill.embedder import stage

SMALL = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4",
    "embedder.train.args.max_steps=2", "embedder.train.args.eval_steps=1", "embedder.train.val_fraction=0.34",
    "embedder.train.matryoshka=[384,96]", "embedder.train.losses=[mse,mnrl,margin_mse]", "embedder.train.mse_corpus_docs=0",
    "embedder.export.parity_texts=8",
    "embedder.evaluate.speed_texts=8", "embedder.evaluate.latency_queries=4",
]
VERBS = stage_verbs(stage)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    work = tmp_path_factory.mktemp("embedder")
    cfg = compose("embedder", [f"paths.work_dir={work}", *SMALL])
    out = {verb: VERBS[verb](cfg) for verb in ("teach", "train", "export", "evaluate")}
    return work, cfg, out


def test_teach_writes_teacher_embeddings_and_mined_triples_and_reads_them_back_from_the_cache(run):
    work, cfg, out = run
    d = work / "embedder" / "teach"
    with np.load(d / "teacher_embeddings.npz") as z:
        assert z["doc_emb"].shape == (24, 768) and z["query_emb"].shape[1] == 768
        assert np.allclose(np.linalg.norm(z["doc_emb"], axis=1), 1.0, atol=1e-4)
        n_texts = len(z["doc_ids"]) + len(z["query_ids"])
    triples = read_jsonl(d / "triples.jsonl")
    taught = out["teach"]
    assert taught.kept == taught.details["n_triples"] == len(triples)
    assert taught.n_items == n_texts and taught.teacher_calls == n_texts and taught.cached == 0  # a fresh cache: all labelled
    assert taught.details["teacher_id"] == "st:mpnet:norm=True:len=32"
    saved = read_json(d / "teach.json")
    assert saved["verb"] == "teach" and saved["teacher_calls"] == n_texts and saved["details"]["n_triples"] == len(triples)
    assert OmegaConf.load(d / "config.yaml").embedder.teach.negatives_per_query == 2  # the config it ran with
    from ragdistill.common.data import load_retrieval

    train_qrels = load_retrieval("scifact", 6, 24).split("train")[1]
    for t in triples:
        assert t["neg_id"] not in train_qrels[t["query_id"]] and t["pos_id"] in train_qrels[t["query_id"]]
        assert t["neg_score"] < t["pos_score"] - 0.05 + 1e-6  # the margin filter held
    again = stage.teach(cfg)  # every label is in the cache now: no teacher call, the same triples
    assert again.teacher_calls == 0 and again.cached == n_texts and again.kept == len(triples)
    assert read_jsonl(d / "triples.jsonl") == triples


def test_the_shipped_demo_labels_keep_hitting_the_cache(tmp_path, one_thread):
    """conf/demo.yaml's embedder slice is labelled entirely by data/labels/embedder-scifact-demo.jsonl:
    teach makes no teacher call (the keys are those the stage always made)."""
    demo = list(OmegaConf.load(conf_dir() / "demo.yaml").overrides.embedder)
    cfg = compose("embedder", [f"paths.work_dir={tmp_path}", "run.report_to=[]", *demo])
    taught = stage.teach(cfg)
    assert taught.teacher_calls == 0 and taught.cached == taught.n_items == 230
    assert taught.details["teacher_id"] == "st:mpnet:norm=True:len=256"


def test_train_keeps_best_checkpoint_and_history(run):
    work, _, out = run
    trained = out["train"]
    summary = trained.details
    assert summary["losses"] == {"mse": 1.0, "mnrl": 1.0, "margin_mse": 1.0}
    assert summary["projection"] == "learned" and summary["matryoshka"] == [384, 96]
    assert [h["step"] for h in summary["history"]] == [0, 1, 2] and trained.train_steps == 2
    assert summary["best"]["val_ndcg@10"] == max(h["val_ndcg@10"] for h in summary["history"][1:])
    # the validation queries' triples are held out of the training rows
    triples = read_jsonl(work / "embedder" / "teach" / "triples.jsonl")
    assert 0 < summary["n_train_rows"] == trained.n_items < len(triples) and summary["n_mse_texts"] == 0
    student = work / "embedder" / "train" / "student"
    assert trained.student == str(student)
    assert json.loads((student / "config_sentence_transformers.json").read_text())["model_type"] == "SentenceTransformer"
    assert (work / "embedder" / "train" / "projection.safetensors").stat().st_size > 384 * 768 * 4  # the 384->768 map
    assert not (work / "embedder" / "train" / "checkpoints").exists()
    assert read_json(work / "embedder" / "train" / "train.json")["details"]["history"] == summary["history"]


def test_export_loads_with_onnx_backend_keeps_parity_and_writes_the_monitor_baseline(run):
    from sentence_transformers import SentenceTransformer

    work, _, out = run
    exported = out["export"]
    assert exported.model == str(work / "embedder" / "export" / "model")
    fp32, int8 = exported.variants["student_onnx"], exported.variants["student_onnx_int8"]
    assert fp32.parity > 0.999 and not fp32.quantized
    assert int8.parity >= 0.99 and int8.quantized  # per-channel int8: 0.990-0.996 measured
    assert exported.details["gate"] == {"min_parity": 0.99, "min_parity_quantized": 0.99, "failed": []}
    assert int8.size_mb < fp32.size_mb / 2
    path = work / "embedder" / "export" / "model"
    onnx32 = SentenceTransformer(str(path), backend="onnx")
    onnx8 = SentenceTransformer(str(path), backend="onnx", model_kwargs={"file_name": "onnx/model_qint8.onnx"})
    a, b = onnx32.encode(["a claim about cells"]), onnx8.encode(["a claim about cells"])
    assert a.shape == b.shape == (1, 384)
    assert float((a @ b.T)[0, 0]) > 0.98
    # the shared export step measured the monitor baseline on the 6 held-out queries (of monitor.baseline_inputs=8)
    base = read_json(work / "embedder" / "export" / "monitor_baseline.json")
    m = base["metrics"]
    assert m["n"] == 6 and base["divergence"] == pytest.approx(1 - m["score_profile_corr"])
    assert 0.0 < base["divergence"] < 0.5 and 0.0 < m["top10_overlap"] <= 1.0
    assert "cosine" not in m  # 384 vs 768 dims: no shared space
    assert exported.details["monitor_baseline"]["divergence"] == base["divergence"]


def test_evaluate_reports_every_system_per_dim_with_mteb_json(run):
    work, _, out = run
    evaluated = out["evaluate"]
    results = evaluated.results
    assert list(results) == ["teacher", "student_base", "student", "student_onnx", "student_onnx_int8"]
    for name, r in results.items():
        for m in ("ndcg@10", "mrr@10", "recall@100", "ndcg@10 d=96", "mteb_ndcg@10"):
            assert 0.0 <= r[m] <= 1.0, (name, m)
        assert r["queries_per_s"] > 0 and r["query_p95_ms"] >= r["query_p50_ms"] > 0
        # MTEB's evaluator on the same embeddings agrees with ours
        assert r["mteb_ndcg@10"] == pytest.approx(r["ndcg@10"], abs=0.02), name
    assert results["teacher"]["dim"] == 768 and results["student"]["dim"] == 384
    assert evaluated.teacher_calls == 0 and evaluated.cached >= 24 + 6  # the teacher's vectors are teach's, from the cache
    # a slice of SciFact is never filed under MTEB's official task: a custom task named for what it is
    saved = read_json(work / "embedder" / "evaluate" / "results.json")
    task = saved["details"]["mteb_task"]["name"]
    assert re.fullmatch(r"ragdistill-scifact-test-slice-\d+q-\d+d", task)
    assert saved["details"]["mteb_task"] == {"name": task, "standard": False, "full_split": False}
    mteb_dir = work / "embedder" / "evaluate" / "mteb" / "student"
    assert not (mteb_dir / "SciFact.json").exists()
    mteb_file = json.loads((mteb_dir / f"{task}.json").read_text())
    assert mteb_file["task_name"] == task and "ndcg_at_10" in mteb_file["scores"]["test"][0]
    assert json.loads((mteb_dir / "model_meta.json").read_text())["name"] == "ragdistill/student"  # which model scored
    assert saved["verb"] == "evaluate" and saved["split"] == "test"
    assert saved["details"]["export"]["parity"]["student_onnx"]["mean_cosine"] == out["export"].variants["student_onnx"].parity
    assert saved["results"]["student"]["ndcg@10"] == results["student"]["ndcg@10"]
    assert (work / "embedder" / "evaluate" / "results.txt").read_text().count("student_onnx_int8") == 1


def test_local_and_standard_mteb_tasks_load_no_data_and_a_wrong_task_name_is_clear():
    from ragdistill.common.data import Document
    from ragdistill.embedder.mteb_task import make_task

    corpus, queries, qrels = {"d1": Document("d1", "a text")}, {"q1": "a query"}, {"q1": {"d1": 1}}
    local = make_task("ragdistill-x-test", corpus, queries, qrels)
    assert local.metadata.name == "ragdistill-x-test" and local.data_loaded
    sliced = make_task("ragdistill-scifact-test", corpus, queries, qrels, standard="SciFact")  # not SciFact's split: a custom task
    assert sliced.metadata.name == "ragdistill-scifact-test-slice-1q-1d" and "a slice of MTEB's SciFact" in sliced.metadata.description
    assert sliced.metadata.dataset["path"] != "mteb/scifact" and sliced.dataset["default"]["test"]["relevant_docs"] == {"q1": {"d1": 1}}
    from ragdistill.common.data import load_retrieval

    full = load_retrieval("scifact")  # the bundled copy's full test split: MTEB's own task, official revision
    fq, fqrels = full.split("test")
    std = make_task("ignored", full.corpus, fq, fqrels, standard="SciFact")
    assert std.metadata.name == "SciFact" and std.metadata.dataset["path"] == "mteb/scifact" and len(fq) == 300
    with pytest.raises(RagdistillError, match=r"data.mteb_task='SciFakt' is not an MTEB task"):
        make_task("x", corpus, queries, qrels, standard="SciFakt")
    with pytest.raises(RagdistillError, match=r"not retrieval on split 'train'"):
        make_task("x", corpus, queries, qrels, split="train", standard="SciFact")


def test_component_and_first_stage_helper(run):
    from ragdistill.common.data import load_retrieval
    from ragdistill.embedder.retrieve import dense_retrieve

    work, cfg, _ = run
    encode = stage.component(cfg, "student_onnx")
    assert encode.model_path == str(work / "embedder" / "export" / "model" / "onnx" / "model.onnx")
    data = load_retrieval("scifact", 6, 24)
    queries, _ = data.split("test")
    run_ = dense_retrieve(data.corpus, queries, lambda texts: encode(texts, is_query=False), top_k=5)
    assert set(run_) == set(queries) and all(len(v) == 5 for v in run_.values())
    int8 = stage.component(cfg, "student_onnx_int8")(["a claim about cells"], is_query=True)
    assert float((int8 @ encode(["a claim about cells"], is_query=True).T)[0, 0]) > 0.98


def test_calibrate_routing_monitor_and_rounds_through_the_shared_operations(run, tmp_path):
    """The embedder gets calibrate, the routed variant, the monitor and rounds from its hooks: held-out
    queries scored by NDCG@10 of their score profile over the evaluate corpus, routed by margin."""
    from ragdistill.common.cache import label_key
    from ragdistill.common.ops import routed
    from ragdistill.common.ops.failure_queue import load_queue
    from ragdistill.common.ops.monitor import measure, monitor_command
    from ragdistill.embedder.data import load_data as stage_data
    from ragdistill.embedder.teacher import TEMPLATE

    src, _, out = run
    work = tmp_path / "w"
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("model", "mteb"))  # not the export (monitor baseline kept)
    over = [f"paths.work_dir={work}", *SMALL, "routing.max_teacher_fraction=0.5", "routing.queue_disagreement=0.0"]
    cfg = compose("embedder", over)
    verbs = stage_verbs(stage)

    cal = verbs["calibrate"](cfg)
    assert cal["n"] == 6 and cal["signal"] == "margin" and cal["quality_metric"] == "ndcg@10"
    # quality is evaluate's NDCG@10, per query: the means are evaluate's figures for the same systems
    assert cal["student_quality"] == pytest.approx(out["evaluate"].results["student"]["ndcg@10"], abs=1e-6)
    assert cal["teacher_quality"] == pytest.approx(out["evaluate"].results["teacher"]["ndcg@10"], abs=1e-6)
    assert cal["teacher_fraction"] <= 0.5 and cal["quality"] >= cal["student_quality"] - 1e-12
    items = read_jsonl(work / "embedder" / "calibrate" / "items.jsonl")
    assert len(items) == 6 and all(0.0 < i["disagreement"] < 1.0 for i in items)
    # the confidence is the student's margin: its best minus its second-best document of the evaluate corpus
    encode = stage.component(cfg, "student")
    data = stage_data(cfg)
    docs = encode([data.corpus[d].full_text for d in data.corpus])
    for i, r in zip(items, stage.held_out(cfg), strict=True):
        top = np.sort(docs @ encode([r["query"]])[0])[::-1]
        assert i["id"] == r["id"] and i["confidence"] == pytest.approx(float(top[0] - top[1]), abs=1e-5)
    assert cal["queued_inputs"] == 6  # queue_disagreement=0: every held-out query queued
    queue = load_queue(work / "embedder" / "queue.jsonl")
    with np.load(work / "embedder" / "teach" / "teacher_embeddings.npz") as z:
        row = {str(q): v for q, v in zip(z["query_ids"], z["query_emb"], strict=True)}
    test_q = {r["query"]: r["id"] for r in stage.held_out(cfg)}
    for rec in queue:  # each queued query is teach's own label-cache entry: same key, same vector
        assert rec.key == label_key("st:mpnet:norm=True:len=32", TEMPLATE, rec.input)
        assert np.array_equal(rec.teacher_output, row[test_q[rec.input]])

    comp = routed(stage, cfg)
    records = stage.held_out(cfg)
    for r in records:
        assert len(comp(r["query"])) == 24  # a score per reference document
    assert comp.stats()["n_calls"] == 6 and comp.stats()["n_teacher_calls"] == sum(i["routed"] for i in items)
    with pytest.raises(RagdistillError, match="needs a 'query' string"):
        comp(["an encoder call"], is_query=True)  # a batch of texts is the encoder's call (component), not a routed query

    # the monitor: the held-out queries measure exactly the export-time baseline; a lower baseline is drift
    baseline = read_json(work / "embedder" / "export" / "monitor_baseline.json")
    assert measure(stage, cfg, [{"query": r["query"]} for r in records])["divergence"] == pytest.approx(baseline["divergence"], abs=1e-6)
    log = tmp_path / "live.jsonl"
    log.write_text("".join(json.dumps({"query": r["query"]}) + "\n" for r in records))
    (tmp_path / "low.json").write_text(json.dumps({"divergence": 0.0}))
    with pytest.raises(SystemExit) as e:
        monitor_command(["embedder", "--log", str(log), "--margin", "0", "--baseline", str(tmp_path / "low.json"), *over])
    assert e.value.code == 1

    # rounds: keep round 1; the queue folds into teach as MSE texts (labels from the cache), train uses them
    kept = verbs["next-round"](cfg)
    assert (kept / "student" / "model.safetensors").is_file()
    cfg_q = compose("embedder", [*over, "data.extra=queue", "embedder.evaluate.systems=[teacher,student]", "embedder.evaluate.mteb=false"])
    folded = verbs["teach"](cfg_q)
    q = folded.details["queue"]
    assert q["mse_texts_added"] == 6 and q["mse_texts"] == 6 and q["teacher_labels"] == {"cached": 6, "labelled": 0}
    assert folded.teacher_calls == 0
    assert [r["text"] for r in read_jsonl(work / "embedder" / "teach" / "mse_texts.jsonl")] == [rec.input for rec in queue]
    trained = verbs["train"](cfg_q)
    assert trained.details["n_mse_texts"] == 6 and trained.n_items == trained.details["n_train_rows"] + 6
    verbs["evaluate"](cfg_q)
    cmp = verbs["compare-rounds"](cfg)
    assert cmp["columns"] == ["teacher", "round 1", "round 2"] and cmp["queue"] == {"disagreement": 6}
    assert cmp["results"]["round 1"]["ndcg@10"] == out["evaluate"].results["student"]["ndcg@10"]
    # dedup: a text already folded in, or a training query, is not added again
    items = [(rec.input, rec.teacher_output, TEMPLATE) for rec in queue]
    train_text = data.queries[read_jsonl(work / "embedder" / "teach" / "triples.jsonl")[0]["query_id"]]
    counts = stage.add_training_examples(cfg_q, [*items, (train_text, items[0][1], TEMPLATE)])
    assert counts == {"mse_texts_added": 0, "mse_texts_skipped": 7, "mse_texts": 6}
    assert verbs["teach"](cfg_q).details["queue"]["mse_texts"] == 6  # teach starts afresh, then folds the queue in again


def test_student_dim_mismatch_without_projection_is_a_clear_error(run):
    work, _, _ = run
    cfg = compose("embedder", [f"paths.work_dir={work}", *SMALL, "embedder.train.projection=none"])
    with pytest.raises(RagdistillError, match=r"embeds in 384 dims but the teacher's embeddings have 768.*embedder\.train\.projection=learned"):
        stage.train(cfg)


def test_bad_settings_name_the_key(run):
    work, _, _ = run
    with pytest.raises(RagdistillError, match=r"embedder.train.losses=\[mse,kl\]"):
        compose("embedder", [f"paths.work_dir={work}", *SMALL, "embedder.train.losses=[mse,kl]"])  # an Enum: checked when composed
    for override, message in [
        ("embedder.train.matryoshka=[512,64]", r"embedder.train.matryoshka=\[512, 64\]: dims \[512\] are not in 1..384"),
        ("embedder.train.losses=[]", r"embedder.train.losses is empty"),
        ("+embedder.train.args.learning_rat=1e-4", r"embedder.train.args: learning_rat \(did you mean learning_rate\?\) is not an argument"),
        ("+embedder.train.args.seed=1", r"embedder.train.args: seed is set by the stage itself"),
    ]:
        with pytest.raises(RagdistillError, match=message):
            stage.train(compose("embedder", [f"paths.work_dir={work}", *SMALL, override]))


def test_missing_artifacts_and_malformed_triples(tmp_path, run):
    work, _, _ = run
    with pytest.raises(RagdistillError, match=r"train/student: trained student not found; run `ragdistill embedder train` first"):
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
