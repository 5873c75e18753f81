"""reranker train: distil the teacher's candidate-list scores into the students.

The cross-encoder student (``student.model``, default the packaged all-MiniLM-L6-v2 with a fresh
1-logit head) trains with sentence-transformers' ``CrossEncoderTrainer`` on the weighted sum of
MarginMSE, listwise KL and MSE that ``reranker.train.loss`` selects, with
``CrossEncoderTrainingArguments`` built from ``reranker.train.args``. It is saved in
``train/student`` (``paths.student_dir``), its untrained copy beside it as ``train/student_base``
(the "before distillation" column). The ColBERT student (``reranker.train.colbert``) distils
listwise KL over the same lists into ``train/colbert`` (untrained: ``train/colbert_base``).
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import torch

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, iter_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.results import TrainResult
from ragdistill.common.training import build_training_args
from ragdistill.reranker.lists import load_data, train_lists_file
from ragdistill.reranker.losses import build_loss, label_column
from ragdistill.reranker.students import has_ranking_head, new_cross_encoder, standardize_pooler

log = get_logger(__name__)


def load_training_lists(cfg: Any, list_size: int, require_positive: bool = False) -> list[dict[str, Any]]:
    """``teach``'s lists as ``{query_id, query, docs, scores, labels}`` rows (positive first, first
    ``list_size``). ``labels`` is each document's judged relevance (teach's, else the qrels), None for
    an unjudged list folded in from the failure queue. With ``require_positive`` (the supervised loss
    is on) a judged list without a relevant document is an error naming the line and the query."""
    f = train_lists_file(cfg)
    if not f.is_file():
        raise RagdistillError(f"{f} not found; run `ragdistill reranker teach` first (with the same paths.work_dir)")
    data = load_data(cfg)
    qrels = data.qrels.get(cfg.data.train_split, {})
    rows = []
    for lineno, r in iter_jsonl(f):
        missing = [d for d in r["doc_ids"] if d not in data.corpus]
        if missing:
            raise RagdistillError(f"{f}:{lineno}: query {r['query_id']!r} names document {missing[0]!r}, not in data "
                                  f"{(cfg.data.path or cfg.data.name)!r}; teach and train must use the same data settings")
        n = min(list_size, len(r["doc_ids"]))
        labels = None
        if not r.get("from_queue"):
            labels = r.get("labels") or [int(qrels.get(r["query_id"], {}).get(d, 0)) for d in r["doc_ids"]]
            labels = [int(x) for x in labels[:n]]
            if require_positive and not any(x > 0 for x in labels):
                raise RagdistillError(
                    f"{f}:{lineno}: the training list of query {r['query_id']!r} ({r['query'][:80]!r}) has no judged positive among "
                    f"its {n} documents, and the supervised loss is on (reranker.train.loss.supervised_weight="
                    f"{cfg.reranker.train.loss.supervised_weight}); judge one of them (qrels/{cfg.data.train_split}.tsv, score > 0), "
                    "drop the line, or set reranker.train.loss.supervised_weight=0"
                )
        rows.append({"query_id": r["query_id"], "query": r["query"], "docs": [data.corpus[d].full_text for d in r["doc_ids"][:n]],
                     "scores": r["teacher_scores"][:n], "labels": labels})
    if not rows:
        raise RagdistillError(f"{f} has no training lists; rerun teach")
    return rows


def _steps(n_rows: int, batch: int, epochs: float, max_steps: int) -> int:
    return max_steps if max_steps > 0 else max(1, math.ceil(n_rows / batch * epochs))


def training_args(cfg: Any, output_dir: str) -> Any:
    """``CrossEncoderTrainingArguments`` from ``reranker.train.args`` plus what the stage decides itself."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    tc = cfg.reranker.train
    return build_training_args(
        CrossEncoderTrainingArguments, tc.args, "reranker.train.args",
        output_dir=output_dir, per_device_train_batch_size=int(tc.queries_per_batch), save_strategy="no",
        report_to=list(cfg.run.report_to), seed=int(cfg.run.seed), use_cpu=not torch.cuda.is_available(),
        # DDP: every parameter of the cross-encoder gets a gradient each step. The trainer's default for a
        # non-PreTrainedModel (find unused = True) fails the first backward under torchrun/accelerate
        # ("classifier.bias has been marked as ready twice"; sentence-transformers 5.7, torch 2.13, gloo)
        ddp_find_unused_parameters=False,
    )


def train(cfg: Any) -> TrainResult:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    tc = cfg.reranker.train
    if int(tc.list_size) < 2:
        raise RagdistillError(f"reranker.train.list_size={tc.list_size}: a list needs the positive and at least one negative")
    seed = int(cfg.run.seed)
    student = new_cross_encoder(cfg.student.model, cfg.student.max_length, tc.student_layers, seed)
    loss = build_loss(student, tc.loss)
    rows = load_training_lists(cfg, int(tc.list_size), require_positive=loss.supervised)
    pooler = {}
    if tc.standardize_pooler and not has_ranking_head(cfg.student.model):  # a fresh head on a bi-encoder: see students.py
        sample = [(r["query"], d) for r in rows[: max(1, int(tc.pooler_sample_lists))] for d in r["docs"]]
        pooler = standardize_pooler(student, sample, int(cfg.reranker.evaluate.batch_size))
    out = stage_dir(cfg, "reranker", "train")
    out.mkdir(parents=True, exist_ok=True)
    args = training_args(cfg, str(out / "_checkpoints"))
    ds = Dataset.from_dict({"query": [r["query"] for r in rows], "docs": [r["docs"] for r in rows],
                            "scores": [label_column(r) for r in rows]})
    summary: dict[str, Any] = {"lists": len(rows), "judged_lists": sum(r["labels"] is not None for r in rows), "pooler_init": pooler,
                               "list_size": int(tc.list_size), "loss": loss.get_config_dict()}
    trainer = CrossEncoderTrainer(model=student, args=args, train_dataset=ds, loss=loss)
    # under DDP (torchrun / accelerate launch) every rank runs this function; only rank 0 writes, so
    # two ranks never rename into the same folder and the saved student is the one all ranks share
    rank0 = trainer.is_world_process_zero()
    summary["world_size"] = int(args.world_size)
    if rank0:
        with atomic_path(out / "student_base") as tmp:  # the undistilled student, exactly as training starts
            student.save_pretrained(str(tmp))
    t0 = time.perf_counter()
    result = trainer.train()
    summary["cross_encoder"] = {"steps": int(result.global_step), "train_loss": float(result.training_loss),
                                "seconds": time.perf_counter() - t0,
                                "log": [h for h in trainer.state.log_history if "loss" in h]}
    dest = student_dir(cfg, "reranker")
    res = TrainResult("reranker", n_items=len(rows), train_steps=int(result.global_step), student=str(dest), details=summary)
    if not rank0:
        return res
    with atomic_path(dest) as tmp:
        student.save_pretrained(str(tmp))
    shutil.rmtree(out / "_checkpoints", ignore_errors=True)
    log.info("cross-encoder student: %d steps on %d lists (%d process%s), loss %.4f -> %s", result.global_step, len(rows),
             args.world_size, "es" if args.world_size > 1 else "", result.training_loss, dest)
    if tc.colbert.enabled:  # a plain single-process loop: under DDP rank 0 trains it alone
        summary["colbert"] = train_colbert_student(cfg, rows, out, args)
    return res


def train_colbert_student(cfg: Any, rows: list[dict[str, Any]], out: Any, args: Any) -> dict[str, Any]:
    """The ColBERT student (colbert-ai's model) on the same lists and the same weighted loss: as many
    steps as the cross-encoder's arguments ask (``max_steps``, else ``num_train_epochs`` over the
    lists) unless ``reranker.train.colbert.max_steps`` sets its own, its own learning rate."""
    from ragdistill.reranker.colbert import ColbertStudent, train_colbert

    tc = cfg.reranker.train
    cc = tc.colbert
    seed = int(cfg.run.seed)
    student = ColbertStudent.from_encoder(cc.model, int(cc.dim), int(cc.query_max_length), int(cc.doc_max_length), seed)
    with atomic_path(out / "colbert_base") as tmp:
        student.save(tmp, final_path=out / "colbert_base", card={"base": cc.model, "how": "Not trained: the encoder's weights and a "
                                                                  "seeded random projection (the undistilled ColBERT student)."})
    steps = int(cc.max_steps) or _steps(len(rows), int(tc.queries_per_batch), float(args.num_train_epochs), int(args.max_steps))
    t0 = time.perf_counter()
    log_history = train_colbert(student, rows, tc.loss, float(cc.learning_rate), steps, int(tc.queries_per_batch), seed,
                                int(args.logging_steps))
    info = {"steps": steps, "lists": len(rows), "seconds": time.perf_counter() - t0, "log": log_history,
            "first_loss": log_history[0]["loss"], "last_loss": log_history[-1]["loss"]}
    card = {"base": cc.model, "trained": {k: info[k] for k in ("steps", "lists")} | {"loss": build_loss(None, tc.loss).get_config_dict(),
                                                                                     "learning_rate": float(cc.learning_rate)},
            "how": f"Trained by ragdistill's reranker stage on {len(rows)} candidate lists of {cfg.data.path or cfg.data.name} "
                   f"(split {cfg.data.train_split}): the teacher's scores (`{cfg.teacher.backend}` teacher; listwise KL / "
                   "margin-MSE on per-list z-scores) plus a supervised loss on the judged positives, weighted as below."}
    with atomic_path(out / "colbert") as tmp:
        student.save(tmp, final_path=out / "colbert", card=card)
    log.info("ColBERT student: %d steps, loss %.4f -> %.4f -> %s", steps, info["first_loss"], info["last_loss"], out / "colbert")
    return info


__all__ = ["load_training_lists", "train", "training_args"]
