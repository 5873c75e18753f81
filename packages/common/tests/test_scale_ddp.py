"""Training at scale: the embedder's real `train` verb under `accelerate launch` with conf/launcher/cpu_ddp.yaml
and the reranker's under `torchrun` (2 processes, gloo on CPU); each writes its checkpoint from rank 0
only, and it loads and retrieves / evaluates."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragdistill.common.config import compose
from ragdistill.common.io import read_json
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.paths import conf_dir

stage = pytest.importorskip("ragdistill.embedder").stage
SMALL = [
    "run.report_to=[]", "data.max_queries=6", "data.max_docs=24", "teacher.model=minilm-l6", "teacher.max_length=32",
    "student.max_length=32", "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4",
    "embedder.train.args.max_steps=-1", "embedder.train.args.num_train_epochs=1", "embedder.train.val_fraction=0",
    "embedder.train.losses=[mse,mnrl]", "embedder.train.matryoshka=[]",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    cfg = compose("embedder", [f"paths.work_dir={work}", *SMALL])
    stage_verbs(stage)["teach"](cfg)
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(conf_dir() / "launcher" / "cpu_ddp.yaml"), "--main_process_port", "29541",
           "-m", "ragdistill.common.cli", "embedder", "train", f"paths.work_dir={work}", *SMALL, "run.torch_threads=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return work, cfg, p


def test_two_process_gloo_run_trains_and_its_checkpoint_loads_and_retrieves(ddp_run):
    work, _, p = ddp_run
    assert p.returncode == 0, p.stderr[-3000:]
    log = p.stdout + p.stderr
    assert "DistributedDataParallel" in log  # the trainer wrapped the student for 2 ranks
    summary = read_json(work / "embedder" / "train" / "train.json")  # the result rank 0 wrote
    # one epoch over the triples and the MSE-only texts (two datasets, batches of 4): their batches dealt to 2 ranks
    # (the last, uneven one dropped under DDP), where one process takes them all
    batches = sum(math.ceil(summary["details"][n] / 4) for n in ("n_train_rows", "n_mse_texts"))
    assert summary["details"]["n_train_rows"] == 12 and summary["train_steps"] == batches // 2 < batches

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(summary["student"], device="cpu")
    from ragdistill.common.data import load_retrieval

    data = load_retrieval("scifact", 6, 24)
    queries, qrels = data.split("test")
    ids = list(data.corpus)
    d = model.encode([data.corpus[i].full_text for i in ids], normalize_embeddings=True)
    q = model.encode([queries[k] for k in queries], normalize_embeddings=True)
    run = {qid: {ids[j]: float(s) for j, s in enumerate(row)} for qid, row in zip(queries, q @ d.T, strict=True)}
    scores = evaluate_run(qrels, run, metrics=("ndcg@10",))
    assert 0.2 < scores["ndcg@10"] <= 1.0  # a working retriever on its own slice, not noise


def test_only_rank_zero_writes_the_model(ddp_run):
    _, _, p = ddp_run
    assert (p.stdout + p.stderr).count("train: student saved ->") == 1  # our log line, written by rank 0 only


RERANKER = [
    "run.report_to=[]", "teacher=hybrid-mpnet-bm25", "teacher.members.0.model=minilm-l6", "teacher.members.0.max_length=32",
    "student.max_length=32", "data.max_queries=16", "reranker.teach.shipped_labels=[]", "reranker.candidates.train_k=4",
    "reranker.candidates.eval_k=5", "reranker.teach.filter.min_margin=-100", "reranker.train.list_size=4",
    "reranker.train.queries_per_batch=2", "reranker.train.args.num_train_epochs=1", "reranker.train.args.max_steps=-1",
    "reranker.train.args.warmup_ratio=0", "reranker.train.args.logging_steps=1", "reranker.train.colbert.dim=16",
    "reranker.train.colbert.query_max_length=12", "reranker.train.colbert.doc_max_length=32",
    "reranker.evaluate.latency_queries=0", "reranker.evaluate.biencoders=[]",
]


def test_reranker_two_process_gloo_run_saves_once_and_its_student_evaluates(tmp_path):
    """``torchrun --nproc_per_node 2 -m ragdistill.common.cli reranker train``: 2 gloo ranks share the
    lists (half the steps of one process), rank 0 alone writes the students and the summary, and
    ``reranker evaluate`` scores the saved student. The teacher is the default hybrid one with
    minilm-l6 in place of mpnet, so no teacher has to be built."""
    rerank = pytest.importorskip("ragdistill.reranker").stage
    cfg = compose("reranker", [f"paths.work_dir={tmp_path}", *RERANKER])
    verbs = stage_verbs(rerank)
    verbs["teach"](cfg)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ragdistill.common.cli", "reranker", "train",
           f"paths.work_dir={tmp_path}", *RERANKER, "run.torch_threads=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    log = p.stdout + p.stderr
    assert log.count("cross-encoder student:") == 1 and log.count("ColBERT student:") == 1  # rank 0 only (our log lines)

    out = tmp_path / "reranker" / "train"
    result = read_json(out / "train.json")  # the result rank 0 wrote
    summary = result["details"]
    assert summary["world_size"] == 2 and result["train_steps"] == summary["cross_encoder"]["steps"]
    lists, qpb = summary["lists"], 2
    assert summary["cross_encoder"]["steps"] == math.ceil(math.ceil(lists / 2) / qpb) < math.ceil(lists / qpb)  # each rank half the lists
    assert sorted(f.name for f in out.iterdir()) == ["colbert", "colbert_base", "config.yaml", "student", "student_base",
                                                    "train.json"]  # no temp dirs left; result and config from rank 0 (run_verb)

    res = verbs["evaluate"](cfg).results
    assert {"teacher", "student_base", "student", "colbert_base"} <= set(res)
    assert 0.0 < res["student"]["ndcg@10"] <= 1.0
