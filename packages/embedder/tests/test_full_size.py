"""The embedder at full size (issue 26): the ONNX teacher's parity with torch, the shipped full-corpus
labels, the margin teacher's scores shared with the reranker through one cache, and a Hydra
multirun sweep writing one result per job. Real packaged models, real files, small slices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ragdistill.common.config import compose
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_json
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import data_dir
from ragdistill.embedder import stage

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=3", "embedder.train.args.per_device_train_batch_size=4", "embedder.train.args.max_steps=1",
    "embedder.train.val_fraction=0.34", "embedder.train.matryoshka=[384,96]", "embedder.train.early_stopping_patience=0",
]
FULL_LABELS = data_dir() / "labels" / "embedder-scifact.jsonl.gz"


def test_onnx_teacher_matches_torch_and_fills_the_same_cache(tmp_path):
    """teacher.onnx=true: the fp32 ONNX export of mpnet embeds like torch (cosine >= 0.999) under torch's
    key, so labels it made are cache hits for the torch teacher."""
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.teachers import build_teacher
    from ragdistill.embedder.teacher import TEMPLATE, embed_teacher

    data = load_retrieval("scifact", 4, 8)
    texts = [d.full_text for d in data.corpus.values()] + list(data.queries.values())[:4]
    over = [f"paths.work_dir={tmp_path}", "run.report_to=[]", "teacher.max_length=64", "embedder.teach.shipped_labels=[]"]
    torch_cfg, onnx_cfg = compose("embedder", over), compose("embedder", [*over, "teacher.onnx=true"])
    torch_t, onnx_t = build_teacher(torch_cfg.teacher), build_teacher(onnx_cfg.teacher)
    assert onnx_t.model.get_backend() == "onnx" and torch_t.model.get_backend() == "torch"
    assert onnx_t.teacher_id == torch_t.teacher_id == "st:mpnet:norm=True:len=64"
    a, b = torch_t.embed(texts), onnx_t.embed(texts)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999, cos
    with embed_teacher(onnx_cfg) as t:  # the ONNX teacher labels through the stage's cache ...
        made = t.label(texts, TEMPLATE)
    assert made.labelled == len(texts) and made.cached == 0
    with embed_teacher(torch_cfg) as t:  # ... and the torch teacher reads them
        read = t.label(texts, TEMPLATE)
    assert read.cached == len(texts) and read.labelled == 0
    assert np.allclose(np.stack(read.labels), b, atol=1e-6)


@pytest.mark.skipif(not FULL_LABELS.is_file(), reason="data/labels/embedder-scifact.jsonl.gz not built yet")
def test_shipped_full_corpus_labels_make_teach_a_cache_read(tmp_path):
    """The shipped float16 labels hold the default teacher's embeddings of all 5,183 SciFact documents and
    1,109 queries: teach on the full corpus makes no teacher call."""
    cfg = compose("embedder", [f"paths.work_dir={tmp_path}", "run.report_to=[]"])
    taught = stage.teach(cfg)
    # 6,288 distinct texts: four claims appear twice among the queries (same text, one label)
    assert taught.teacher_calls == 0 and taught.n_items == 5183 + 1109 and taught.cached == 6288
    assert taught.details["teacher_id"] == "st:mpnet:norm=True:len=256" and taught.details["n_train_queries"] == 809
    with np.load(tmp_path / "embedder" / "teach" / "teacher_embeddings.npz") as z:
        assert z["doc_emb"].shape == (5183, 768)
        assert np.allclose(np.linalg.norm(z["doc_emb"], axis=1), 1.0, atol=2e-3)  # float16 round trip


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    work = tmp_path_factory.mktemp("embedder_full")
    cfg = compose("embedder", [f"paths.work_dir={work}", *TINY])
    stage_verbs(stage)["teach"](cfg)
    return work


def test_train_caps_negatives_and_adds_the_corpus_as_mse_texts(taught):
    cfg = compose("embedder", [f"paths.work_dir={taught}", *TINY, "embedder.train.negatives_per_query=1",
                               "embedder.train.mse_corpus_docs=10"])
    trained = stage.train(cfg)
    d = trained.details
    per_query: dict[str, int] = {}
    for t in read_jsonl_triples(taught):
        per_query[t["query_id"]] = per_query.get(t["query_id"], 0) + 1
    assert max(per_query.values()) > 1  # teach mined several per query ...
    assert d["n_train_rows"] == d["n_train_queries"]  # ... train kept the hardest one of each
    assert d["n_mse_corpus_docs"] == d["n_mse_texts"] == 10 and trained.n_items == d["n_train_rows"] + 10
    with pytest.raises(RagdistillError, match=r"embedder.train.negatives_per_query=0: use 1 or more"):
        stage.train(compose("embedder", [f"paths.work_dir={taught}", *TINY, "embedder.train.negatives_per_query=0"]))


def test_teach_adds_other_corpora_as_mse_texts(tmp_path):
    """embedder.teach.mse_extra: another data set's documents (here CANARD's Wikipedia answer spans), embedded by
    the teacher through the label cache, become MSE rows of train (feature distillation needs no queries)."""
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.io import read_jsonl

    over = [f"paths.work_dir={tmp_path}", *TINY, "embedder.teach.mse_extra=[canard]", "embedder.teach.mse_extra_docs=5"]
    taught = stage_verbs(stage)["teach"](compose("embedder", over))
    assert taught.details["mse_extra"] == {"canard": 5}
    rows = read_jsonl(tmp_path / "embedder" / "teach" / "mse_texts.jsonl")
    canard = {d.full_text for d in load_retrieval("canard").corpus.values()}
    assert len(rows) == 5 and all(r["text"] in canard and len(r["teacher"]) == 768 for r in rows)
    assert all(abs(np.linalg.norm(r["teacher"]) - 1.0) < 1e-3 for r in rows)  # the teacher's normalised embeddings
    again = stage.teach(compose("embedder", over))  # the same sample, from the cache
    assert again.teacher_calls == 0 and read_jsonl(tmp_path / "embedder" / "teach" / "mse_texts.jsonl") == rows
    trained = stage.train(compose("embedder", [*over, "embedder.train.mse_corpus_docs=0"]))
    assert trained.details["n_mse_texts"] == 5 and trained.n_items == trained.details["n_train_rows"] + 5
    with pytest.raises(RagdistillError, match=r"embedder.teach.mse_extra_docs=-1: use 0 \(off\), a count, or null"):
        stage.teach(compose("embedder", [*over, "embedder.teach.mse_extra_docs=-1"]))
    with pytest.raises(RagdistillError, match=r"no-such-set: no such dataset"):
        stage.teach(compose("embedder", [*over, "embedder.teach.mse_extra=[no-such-set]"]))


def read_jsonl_triples(work: Path) -> list[dict]:
    from ragdistill.common.io import read_jsonl

    return read_jsonl(work / "embedder" / "teach" / "triples.jsonl")


def test_margin_teacher_reads_the_scores_the_reranker_stage_made(taught, tmp_path):
    """embedder.train.margin_teacher=the reranker's hybrid teacher: pairs the reranker stage's own teacher
    hook scored are cache hits for the embedder (one cache, the same keys), and they are its margin_mse target."""
    from ragdistill.common.data import load_retrieval
    from ragdistill.common.stage import get_stage
    from ragdistill.embedder.margins import margin_teacher, teacher_margins
    from ragdistill.embedder.train import cap_negatives, split_validation

    cache = tmp_path / "labels.sqlite"
    over = [f"paths.work_dir={taught}", *TINY, f"paths.label_cache={cache}", "embedder.train.losses=[mnrl,margin_mse]",
            "teacher@embedder.train.margin_teacher=hybrid-mpnet-bm25", "embedder.train.negatives_per_query=1",
            "embedder.train.margin_scale=2.0"]
    cfg = compose("embedder", over)
    # the pairs train will score: its training triples (validation queries held out), one negative each
    triples = stage_triples(taught)
    train_q, _ = split_validation(sorted({t.query_id for t in triples}), 0.34, cfg.run.seed)
    train_triples = cap_negatives([t for t in triples if t.query_id in train_q], 1)
    data = load_retrieval("scifact", 6, 24)
    records = [{"query": data.queries[t.query_id], "docs": [data.corpus[t.pos_id].full_text, data.corpus[t.neg_id].full_text]}
               for t in train_triples]
    reranker = get_stage("reranker")
    rcfg = compose("reranker", [f"paths.work_dir={tmp_path / 'rr'}", "run.report_to=[]", "data=scifact", f"paths.label_cache={cache}",
                                "teacher=hybrid-mpnet-bm25"])
    scored = reranker.predictor(rcfg, "teacher")(records)  # the reranker's own hook labels the pairs into the cache
    with margin_teacher(cfg) as scorer:
        margins, run = teacher_margins(scorer, train_triples, data)
    assert run.labelled == 0 and run.cached == len({(t.query_id, d) for t in train_triples for d in (t.pos_id, t.neg_id)})
    assert np.allclose(margins, [s[0] - s[1] for s in scored], atol=1e-6)

    trained = stage.train(cfg)
    info = trained.details["margin_teacher"]
    assert info["labelled"] == 0 and info["cached"] == info["pairs"] == run.cached and info["teacher_id"].startswith("ens:")
    assert info["mean"] == pytest.approx(2.0 * float(margins.mean()), rel=1e-5)  # margin_scale applied
    assert trained.teacher_calls == 0 and trained.cached == info["pairs"]
    with pytest.raises(RagdistillError, match="has no margin_mse"):
        stage.train(compose("embedder", [*over[:-4], "teacher@embedder.train.margin_teacher=hybrid-mpnet-bm25"]))


def stage_triples(work: Path) -> list:
    from ragdistill.common.data import Triple

    return [Triple(**r) for r in read_jsonl_triples(work)]


def test_models_from_evaluates_a_student_trained_elsewhere(taught, tmp_path):
    """embedder.evaluate.models_from scores another work dir's student on other data, results written here."""
    stage_verbs(stage)["train"](compose("embedder", [f"paths.work_dir={taught}", *TINY]))  # writes train.json, which evaluate reports
    other = tmp_path / "unseen"
    ecfg = compose("embedder", [f"paths.work_dir={other}", "run.report_to=[]", "data=squad", "data.max_queries=3", "data.max_docs=12",
                                "teacher.max_length=32", "student.max_length=32", f"embedder.evaluate.models_from={taught}",
                                "embedder.evaluate.systems=[student_base,student]", "embedder.evaluate.mteb=false",
                                "embedder.evaluate.speed_texts=2", "embedder.evaluate.latency_queries=1"])
    res = stage_verbs(stage)["evaluate"](ecfg)
    assert set(res.results) == {"student_base", "student"} and res.details["models_from"] == str(taught)
    assert res.details["train"]["student"] == "minilm-l6" and (other / "embedder" / "evaluate" / "results.json").is_file()
    with pytest.raises(RagdistillError, match=r"models_from=/nonexistent: no such work dir"):
        stage.evaluate(compose("embedder", [f"paths.work_dir={other}", "run.report_to=[]", "embedder.evaluate.models_from=/nonexistent"]))


def test_multirun_sweep_writes_one_result_per_job(taught, tmp_path):
    """`ragdistill embedder train -m` over two learning rates: each job trains in its own work dir (named
    after its values: the CLI does not give multirun jobs their own folders yet) and writes its train.json."""
    sweep = tmp_path / "sweep"
    job_dir = f"paths.work_dir={sweep}/lr" + "${embedder.train.args.learning_rate}"
    common = [job_dir, *TINY, f"paths.label_cache={taught}/cache/labels.sqlite", "embedder.train.mse_corpus_docs=0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    for verb in ("teach", "train"):  # teach fills each job's dir from the cache, train sweeps
        proc = subprocess.run([sys.executable, "-m", "ragdistill.common.cli", "embedder", verb, "-m", *common,
                               "embedder.train.args.learning_rate=1e-5,3e-5"], capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    results = {p.parent.parent.parent.name: read_json(p) for p in sweep.glob("*/embedder/train/train.json")}
    assert sorted(results) == ["lr1e-05", "lr3e-05"]
    for name, r in results.items():
        ran = OmegaConf.load(sweep / name / "embedder" / "train" / "config.yaml")  # the config each job ran with
        assert ran.embedder.train.args.learning_rate == float(name[2:]) and r["train_steps"] == 1


def test_base_weight_merges_the_student_back_toward_its_start(taught, tmp_path):
    """embedder.train.base_weight (WiSE-FT): 1.0 saves the starting checkpoint's weights whatever training did, so the
    merged student's validation NDCG@10 is the one measured before training, and the distilled weights are kept
    beside it; a share outside [0, 1] fails before any training step."""
    import shutil

    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from ragdistill.common.models import resolve_model

    work = tmp_path / "merged"
    shutil.copytree(taught / "embedder" / "teach", work / "embedder" / "teach")
    # no warmup: the one step would otherwise run at learning rate 0 and leave the distilled weights at the start
    over = [f"paths.work_dir={work}", *TINY, f"paths.label_cache={taught}/cache/labels.sqlite", "embedder.train.args.learning_rate=1e-3",
            "embedder.train.args.warmup_ratio=0", "embedder.train.max_length=16"]
    trained = stage.train(compose("embedder", [*over, "embedder.train.base_weight=1.0"]))
    d = trained.details
    assert d["merged"]["base_weight"] == 1.0 and d["merged"]["tensors"] > 50
    assert d["merged"]["val_ndcg@10"] == pytest.approx(d["history"][0]["val_ndcg@10"], abs=1e-6)
    saved = load_file(str(Path(trained.student) / "model.safetensors"))
    start = load_file(str(Path(resolve_model("minilm-l6")) / "model.safetensors"))
    assert all(np.allclose(saved[k].numpy(), start[k].numpy(), atol=1e-6) for k in saved if k in start)
    # the distilled weights stay beside the merge (another share is a merge bench run, not a retrain)
    distilled = load_file(str(Path(d["merged"]["distilled"]) / "model.safetensors"))
    assert distilled.keys() == saved.keys()
    assert not all(np.allclose(distilled[k].numpy(), start[k].numpy(), atol=1e-6) for k in distilled if k in start)
    # both folders serve at student.max_length (32), not the training length (16)
    for folder in (Path(trained.student), Path(d["merged"]["distilled"])):
        assert SentenceTransformer(str(folder)).max_seq_length == 32
    with pytest.raises(RagdistillError, match=r"embedder.train.base_weight=1.5: .* must be in \[0, 1\]"):
        stage.train(compose("embedder", [*over, "embedder.train.base_weight=1.5"]))


def test_anchor_texts_join_training_and_a_bad_source_is_named(taught, tmp_path):
    """embedder.train.anchor_data: documents of another data set (CANARD here) train beside the triples toward
    the student's own starting vectors; a source with no corpus fails before any step, naming the setting."""
    import shutil

    work = tmp_path / "anchored"
    shutil.copytree(taught / "embedder" / "teach", work / "embedder" / "teach")
    over = [f"paths.work_dir={work}", *TINY, f"paths.label_cache={taught}/cache/labels.sqlite", "embedder.train.args.max_steps=2"]
    trained = stage.train(compose("embedder", [*over, "embedder.train.anchor_data=[canard]", "embedder.train.anchor_docs=8"]))
    assert trained.details["n_anchor_texts"] == 8 and trained.train_steps == 2
    assert trained.n_items == trained.details["n_train_rows"] + trained.details["n_mse_texts"] + 8
    with pytest.raises(RagdistillError, match=r"embedder.train.anchor_docs=-1: use 0 \(off\), a count, or null"):
        stage.train(compose("embedder", [*over, "embedder.train.anchor_data=[canard]", "embedder.train.anchor_docs=-1"]))
