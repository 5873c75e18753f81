"""wandb: one run per stage verb, named ``<stage>-<verb>``, grouped by the work dir, holding the
composed config, the trainer's own logs and the verb's result; read back from the offline run files
wandb itself wrote (its record log: LevelDB-style blocks of protobuf records)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ragdistill.common.config import compose
from ragdistill.common.ops.tracking import result_metrics
from ragdistill.common.ops.verbs import stage_verbs
from ragdistill.common.results import EvaluateResult
from ragdistill.common.stage import load_stages

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "data.max_queries=6", "data.max_docs=24", "teacher.max_length=32", "student.max_length=32",
    "embedder.teach.negatives_per_query=2", "embedder.train.args.per_device_train_batch_size=4", "embedder.train.args.max_steps=2",
    "+embedder.train.args.logging_steps=1", "embedder.train.val_fraction=0.34", "embedder.train.early_stopping_patience=0",
    "embedder.train.mse_corpus_docs=0",
]


def read_run(path: Path) -> list:
    """The records of an offline ``run-<id>.wandb`` file (32 KiB blocks; 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, buf = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and n == 0:  # padding to the block's end
            pos += left - 7
            continue
        chunk, pos = data[pos:pos + n], pos + n
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            out.append(buf + chunk)
    records = []
    for raw in out:
        r = pb.Record()
        r.ParseFromString(raw)
        records.append(r)
    return records


def test_one_offline_run_per_verb_with_config_trainer_logs_and_result(work_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default: offline, set by the run itself
    stage = load_stages()["embedder"]
    cfg = compose("embedder", [f"paths.work_dir={work_dir}", "run.report_to=[wandb]", *TINY])
    for verb in ("teach", "train"):
        stage_verbs(stage)[verb](cfg)
    runs = sorted((work_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2  # the trainer logged into the verb's run, it opened none of its own
    seen = {}
    for path in runs:
        records = read_run(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        keys = {i.key or "/".join(i.nested_key) for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item}
        summary = {i.key or "/".join(i.nested_key) for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
        config = {i.key for i in run.config.update}
        seen[run.display_name] = (run, keys, summary, config)
    assert set(seen) == {"embedder-teach", "embedder-train"}
    for name, (run, keys, summary, config) in seen.items():
        assert run.run_group == str(work_dir) and run.job_type == name.split("-")[1]
        assert {"data", "teacher", "student", "embedder"} <= config  # the composed config
        assert {"n_items", "teacher_calls", "seconds"} <= summary and "result/n_items" in keys
    _, train_keys, _, _ = seen["embedder-train"]
    assert any(k.startswith("train/") and "loss" in k for k in train_keys), sorted(train_keys)  # the trainer's own logging


def test_evaluation_figures_become_system_metrics():
    r = EvaluateResult("embedder", n_items=6, split="test",
                       results={"teacher": {"ndcg@10": 0.8, "dim": 768}, "student": {"ndcg@10": 0.7, "note": "x"}})
    m = result_metrics(r)
    assert m["teacher/ndcg@10"] == 0.8 and m["student/ndcg@10"] == 0.7 and m["n_items"] == 6 and "student/note" not in m
