"""embedder train: distill the teacher into the student with sentence-transformers' trainer.

The loss is :class:`~ragdistill.embedder.losses.DistillationLoss` (MSE to teacher embeddings,
MNRL over teacher-mined negatives, MarginMSE on teacher margins: ``embedder.train.losses``, weighted
by ``embedder.train.loss_weights``), wrapped in ``MatryoshkaLoss`` when ``embedder.train.matryoshka``
lists dims. Texts folded in from the failure queue (``teach/mse_texts.jsonl``: no judged positive)
train the MSE part alone, as a second dataset with :class:`~ragdistill.embedder.losses.TextMSELoss`
sharing the projection. A slice of the *training* queries (``val_fraction``) is held out for an
``InformationRetrievalEvaluator``: NDCG@10 before training and at every evaluation, early stopping
on it, best checkpoint kept. The test split is never seen here. ``embedder.train.args`` go to
``SentenceTransformerTrainingArguments`` as they are.
Writes ``<work_dir>/embedder/train/``: ``student/`` (the best student), ``projection.safetensors``
(the learned student->teacher map, reusable), ``pca.npy`` (PCA path); the train result
(``train.json``) holds the history under ``details``.
"""

from __future__ import annotations

import random
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.data import RetrievalData, Triple
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.results import TrainResult
from ragdistill.common.training import build_training_args, check_base_weight, merge_with_base
from ragdistill.embedder.artifacts import MSE_TEXTS, TeachArtifacts, read_mse_texts
from ragdistill.embedder.config import Loss, Projection
from ragdistill.embedder.data import corpus_sample, extra_mse_corpus, load_data
from ragdistill.embedder.losses import DistillationLoss
from ragdistill.embedder.models import STAGE, embedding_dim, load_sentence_transformer

log = get_logger(__name__)

METRIC = "eval_val_cosine_ndcg@10"  # what early stopping and the kept checkpoint follow


def _name(x: Any) -> str:
    return x.name if isinstance(x, Enum) else str(x)


def parse_losses(losses: Any, weights: Any) -> dict[str, float]:
    """``[mse, mnrl]`` -> ``{"mse": w_mse, "mnrl": w_mnrl}`` in the listed order (weights from
    ``loss_weights``, default 1); weight-0 components are dropped."""
    names = list(dict.fromkeys(_name(x) for x in losses))
    if not names:
        raise RagdistillError(f"embedder.train.losses is empty; choose some of {', '.join(x.name for x in Loss)}, e.g. [mse,mnrl]")
    w = {_name(k): float(v) for k, v in dict(weights or {}).items()}
    out = {n: w.get(n, 1.0) for n in names}
    if all(v == 0 for v in out.values()):
        raise RagdistillError(f"embedder.train.loss_weights gives every loss of {names} weight 0; nothing would be trained")
    return {n: v for n, v in out.items() if v != 0}


def check_dims(student_dim: int, teacher_dim: int, projection: str, losses: dict[str, float], matryoshka: list[int], student: str) -> None:
    """Fail early, naming the keys, when the student cannot be trained against these targets."""
    if "mse" in losses and student_dim != teacher_dim:
        if projection == Projection.none.name:
            raise RagdistillError(
                f"student {student!r} embeds in {student_dim} dims but the teacher's embeddings have {teacher_dim} "
                f"(embedder/teach/teach.json), and embedder.train.projection=none: MSE cannot compare them. Set "
                f"embedder.train.projection=learned (a trained {student_dim}->{teacher_dim} map) or pca (reduce the teacher "
                f"to {student_dim}), or drop mse from embedder.train.losses"
            )
        if projection == Projection.pca.name and teacher_dim < student_dim:
            raise RagdistillError(
                f"embedder.train.projection=pca reduces the teacher ({teacher_dim} dims) to the student's {student_dim}, "
                "which is larger; use embedder.train.projection=learned"
            )
    too_big = [d for d in matryoshka if d > student_dim or d <= 0]
    if too_big:
        raise RagdistillError(f"embedder.train.matryoshka={list(matryoshka)}: dims {too_big} are not in 1..{student_dim} (the student's size)")


def pca_components(x: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` principal directions of the teacher's embeddings (uncentred, as
    sentence-transformers' distillation recipe adds them as a bias-free Dense layer)."""
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return vt[:k].astype(np.float32)


def split_validation(train_qids: list[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    qids = sorted(train_qids)
    random.Random(seed).shuffle(qids)
    n_val = round(len(qids) * fraction) if fraction > 0 else 0
    if 0 < fraction and n_val == 0 and len(qids) > 1:
        n_val = 1
    return set(qids[n_val:]), set(qids[:n_val])


def cap_negatives(triples: list[Triple], n: int | None) -> list[Triple]:
    """The first ``n`` triples of each query (teach writes a query's negatives hardest first); None = all."""
    if n is None:
        return list(triples)
    if n < 1:
        raise RagdistillError(f"embedder.train.negatives_per_query={n}: use 1 or more (null = every negative teach mined)")
    seen: dict[str, int] = {}
    out = []
    for t in triples:
        seen[t.query_id] = seen.get(t.query_id, 0) + 1
        if seen[t.query_id] <= n:
            out.append(t)
    return out


def build_dataset(triples: list[Triple], data: RetrievalData, art: TeachArtifacts, targets: Any,
                  margins: np.ndarray | None = None) -> Any:
    """HF dataset (anchor, positive, negative, label) with :meth:`DistillationLoss.pack_labels` labels;
    ``targets(x)`` maps teacher embeddings to the MSE targets (identity, or the PCA reduction);
    ``margins`` replaces the embedding teacher's cosine margins (a scoring teacher's, see ``margins.py``)."""
    from datasets import Dataset

    tq = targets(np.stack([art.query(t.query_id) for t in triples]))
    tp = targets(np.stack([art.doc(t.pos_id) for t in triples]))
    tn = targets(np.stack([art.doc(t.neg_id) for t in triples]))
    margin = margins if margins is not None else np.array([t.pos_score - t.neg_score for t in triples], dtype=np.float32)
    labels = DistillationLoss.pack_labels(tq, tp, tn, margin)
    return Dataset.from_dict({
        "anchor": [data.queries[t.query_id] for t in triples],
        "positive": [data.corpus[t.pos_id].full_text for t in triples],
        "negative": [data.corpus[t.neg_id].full_text for t in triples],
        "label": labels.tolist(),
    })


def build_evaluator(val_qids: set[str], triples: list[Triple], data: RetrievalData, qrels: dict, max_docs: int, seed: int) -> Any:
    """IR evaluator on held-out *training* queries: their positives and mined negatives plus
    random documents, up to ``max_docs``."""
    from sentence_transformers import util
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    needed = list(dict.fromkeys([d for q in sorted(val_qids) for d in qrels[q]] + [t.neg_id for t in triples if t.query_id in val_qids]))
    others = sorted(set(data.corpus) - set(needed))
    random.Random(seed).shuffle(others)
    doc_ids = needed + others[: max(0, max_docs - len(needed))]
    return InformationRetrievalEvaluator(
        queries={q: data.queries[q] for q in sorted(val_qids)},
        corpus={d: data.corpus[d].full_text for d in doc_ids},
        relevant_docs={q: set(qrels[q]) for q in val_qids},
        name="val", mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[100], map_at_k=[100],
        score_functions={"cosine": util.cos_sim}, write_csv=False,
    )


def training_args(cfg: Any, output_dir: Path, has_eval: bool) -> Any:
    """``embedder.train.args`` as SentenceTransformerTrainingArguments, plus what the stage decides: the
    evaluation and checkpoint schedule (with an evaluator: every ``eval_steps``, else each epoch; the
    best checkpoint by validation NDCG@10 kept), ``run.report_to`` and ``run.seed``."""
    from omegaconf import OmegaConf
    from sentence_transformers import SentenceTransformerTrainingArguments

    args = cfg.embedder.train.args
    given = dict(OmegaConf.to_container(args, resolve=True) if OmegaConf.is_config(args) else args or {})
    eval_steps = given.get("eval_steps")
    strategy = ("steps" if eval_steps else "epoch") if has_eval else "no"
    fixed: dict[str, Any] = {
        "output_dir": str(output_dir), "eval_strategy": strategy, "save_strategy": strategy, "save_steps": eval_steps,
        "load_best_model_at_end": has_eval, "metric_for_best_model": METRIC if has_eval else None, "greater_is_better": True,
        "report_to": list(cfg.run.report_to), "seed": int(cfg.run.seed),
    }
    derived = {  # the stage's choices unless args sets them
        "per_device_eval_batch_size": given.get("per_device_train_batch_size", 8),
        "logging_steps": max(1, min(10, int(eval_steps or 10))), "disable_tqdm": False,
    }
    fixed.update({k: v for k, v in derived.items() if k not in given})
    return build_training_args(SentenceTransformerTrainingArguments, given, "embedder.train.args", **fixed)


def train(cfg: Any) -> TrainResult:
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
    from transformers import EarlyStoppingCallback

    s = cfg.embedder.train
    losses = parse_losses(s.losses, s.loss_weights)
    check_base_weight(float(s.base_weight), "embedder.train.base_weight")
    if s.margin_teacher is not None and "margin_mse" not in losses:
        raise RagdistillError(f"embedder.train.margin_teacher is set but embedder.train.losses={list(losses)} has no margin_mse, "
                              "the loss its margins train; add margin_mse or unset the margin teacher")
    art = TeachArtifacts(cfg)
    data = load_data(cfg)
    _, qrels = data.split(cfg.data.train_split)
    missing = {t.query_id for t in art.triples} - set(data.queries) | ({t.pos_id for t in art.triples} | {t.neg_id for t in art.triples}) - set(data.corpus)
    if missing:
        raise RagdistillError(
            f"{art.dir / 'triples.jsonl'} names ids not in the configured data ({sorted(missing)[:3]}...): teach ran on other "
            "data; rerun `ragdistill embedder teach` with the same data.* settings"
        )
    train_qids, val_qids = split_validation(sorted({t.query_id for t in art.triples}), s.val_fraction, cfg.run.seed)
    train_triples = cap_negatives([t for t in art.triples if t.query_id in train_qids], s.negatives_per_query)
    if not train_triples:
        raise RagdistillError(f"no training triples left after holding out embedder.train.val_fraction={s.val_fraction}; lower it or add queries")
    out = stage_dir(cfg, STAGE, "train")
    args = training_args(cfg, out / "checkpoints", has_eval=bool(val_qids))  # a wrong embedder.train.args fails before any model loads
    student = load_sentence_transformer(cfg.student.model, max_length=s.max_length or cfg.student.max_length)
    sdim, tdim = embedding_dim(student), art.dim
    matryoshka = sorted({int(d) for d in (s.matryoshka or [])}, reverse=True)
    projection = _name(s.projection)
    check_dims(sdim, tdim, projection, losses, matryoshka, cfg.student.model)
    mse_texts, mse_vecs = read_mse_texts(cfg, tdim)

    out.mkdir(parents=True, exist_ok=True)
    project = "mse" in losses and sdim != tdim and projection == Projection.learned.name
    pca = None
    if "mse" in losses and sdim != tdim and projection == Projection.pca.name:
        pca = pca_components(np.concatenate([art.doc_emb, art.query_emb]), sdim)
        np.save(out / "pca.npy", pca)

    def targets(x: np.ndarray) -> np.ndarray:
        if pca is None:
            return x
        y = x @ pca.T
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    margins, margin_info, margin_run = None, None, None
    if s.margin_teacher is not None:
        from ragdistill.embedder.margins import margin_teacher, teacher_margins

        with margin_teacher(cfg) as scorer:
            margins, margin_run = teacher_margins(scorer, train_triples, data)
            margin_info = {"teacher_id": scorer.teacher_id, "scale": float(s.margin_scale), "pairs": len(margin_run.labels),
                           "cached": int(margin_run.cached), "labelled": int(margin_run.labelled)}
        margins = margins * np.float32(s.margin_scale)
        cos = np.array([t.pos_score - t.neg_score for t in train_triples], dtype=np.float32)
        margin_info.update(mean=float(margins.mean()), std=float(margins.std()), cosine_margin_mean=float(cos.mean()),
                           cosine_margin_std=float(cos.std()), corr_with_cosine=float(np.corrcoef(margins, cos)[0, 1]))
        log.info("margin teacher %s: %d pairs (%d cached); margins %.3f +- %.3f (embedding teacher's cosine margins %.3f +- %.3f, "
                 "correlation %.2f)", margin_info["teacher_id"], margin_info["pairs"], margin_info["cached"], margin_info["mean"],
                 margin_info["std"], margin_info["cosine_margin_mean"], margin_info["cosine_margin_std"], margin_info["corr_with_cosine"])
    dataset = build_dataset(train_triples, data, art, targets, margins)
    evaluator = build_evaluator(val_qids, art.triples, data, qrels, s.val_max_docs, cfg.run.seed) if val_qids else None

    inner = DistillationLoss(student, losses, teacher_dim=sdim if pca is not None else tdim,
                             projection_dim=tdim if project else None, mnrl_scale=s.mnrl_scale)
    if project:
        fit = _init_projection(inner, student, dataset, tdim)
        log.info("projection %d->%d initialised by ridge least squares (fit loss %.4f)", sdim, tdim, fit)
    loss: Any = MatryoshkaLoss(student, inner, matryoshka, s.matryoshka_weights) if matryoshka else inner
    train_data: Any = dataset
    n_mse_texts = 0
    # single texts trained by MSE alone: corpus documents (no query needed) and folded-in queue texts
    corpus_ids = [d for d in corpus_sample(art.doc_ids, s.mse_corpus_docs, int(cfg.run.seed), "embedder.train.mse_corpus_docs") if d in data.corpus]
    texts = [data.corpus[d].full_text for d in corpus_ids] + mse_texts
    vecs = np.concatenate([np.asarray([art.doc(d) for d in corpus_ids], dtype=np.float32).reshape(-1, tdim), mse_vecs])
    from datasets import Dataset, DatasetDict

    from ragdistill.embedder.losses import ProjectedMSELoss, TextMSELoss

    extra: dict[str, tuple[Any, Any]] = {}  # single-text datasets beside the triples: name -> (rows, loss)
    if texts and inner.mse is not None:
        n_mse_texts = len(texts)
        extra["mse_texts"] = (Dataset.from_dict({"text": texts, "label": targets(vecs).tolist()}),
                              TextMSELoss(student, inner.mse, losses["mse"]))
        log.info("train: %d corpus documents and %d folded-in texts (%s) add MSE rows", len(texts) - len(mse_texts), len(mse_texts), MSE_TEXTS)
    elif texts:
        log.warning("train: %d corpus documents and %d texts of %s are not used: they train the MSE loss, which "
                    "embedder.train.losses=%s leaves out", len(texts) - len(mse_texts), len(mse_texts), MSE_TEXTS, list(losses))
    anchor = [t for src in s.anchor_data
              for t in extra_mse_corpus(str(src), s.anchor_docs, int(cfg.run.seed), "embedder.train.anchor_data", "embedder.train.anchor_docs")]
    if anchor:  # the student has not moved yet: its own vectors now are the undistilled ones it keeps on these texts
        start_vecs = student.encode(anchor, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True)
        extra["anchor"] = (Dataset.from_dict({"text": anchor, "label": start_vecs.tolist()}),
                           TextMSELoss(student, ProjectedMSELoss(student), float(s.anchor_weight)))
        log.info("train: %d documents of %s anchor the student to its starting embeddings (weight %.2f)", len(anchor),
                 list(s.anchor_data), s.anchor_weight)
    if extra:
        train_data = DatasetDict({"triples": dataset, **{k: rows for k, (rows, _) in extra.items()}})
        loss = {"triples": loss, **{k: MatryoshkaLoss(student, part, matryoshka, s.matryoshka_weights) if matryoshka else part
                                    for k, (_, part) in extra.items()}}

    has_eval = evaluator is not None
    callbacks = [EarlyStoppingCallback(early_stopping_patience=int(s.early_stopping_patience))] if has_eval and s.early_stopping_patience > 0 else []
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=train_data, loss=loss, evaluator=evaluator, callbacks=callbacks)

    history: list[dict[str, Any]] = []
    if evaluator is not None:
        base = evaluator(student)
        history.append({"step": 0, "epoch": 0.0, "val_ndcg@10": float(base["val_cosine_ndcg@10"])})
        log.info("val NDCG@10 before training: %.4f", history[0]["val_ndcg@10"])
    resume = _last_checkpoint(out / "checkpoints")
    trained = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    for h in trainer.state.log_history:
        if METRIC in h:
            history.append({"step": int(h["step"]), "epoch": float(h.get("epoch", 0)), "val_ndcg@10": float(h[METRIC])})
    best = None  # the checkpoint load_best_model_at_end restored (what student/ holds)
    if trainer.state.best_model_checkpoint:
        step = int(Path(trainer.state.best_model_checkpoint).name.split("-")[-1])
        best = next((h for h in history if h["step"] == step), {"step": step, "val_ndcg@10": trainer.state.best_metric})

    merged = None
    if s.base_weight:
        # WiSE-FT: part of the way back to the starting checkpoint, for data distillation never showed it. The
        # distilled weights are kept beside the merge, so another share is a bench/embedder_merge.py run, not a retrain
        distilled = out / "student_distilled"
        if trainer.is_world_process_zero():  # saved with the serving length, as student/ is; validation keeps the training one
            train_len = student.max_seq_length
            student.max_seq_length = int(cfg.student.max_length or train_len)
            with atomic_path(distilled) as tmp:
                student.save_pretrained(str(tmp))
            student.max_seq_length = train_len
        start = load_sentence_transformer(cfg.student.model)
        merged = {"base_weight": float(s.base_weight), "distilled": str(distilled),
                  "tensors": merge_with_base(student, start, float(s.base_weight), "embedder.train.base_weight")}
        del start
        if evaluator is not None:
            merged["val_ndcg@10"] = float(evaluator(student)["val_cosine_ndcg@10"])
            log.info("train: merged with the undistilled student (base_weight %.2f): val NDCG@10 %.4f", s.base_weight, merged["val_ndcg@10"])
    student.max_seq_length = int(cfg.student.max_length or student.max_seq_length)
    dest = student_dir(cfg, STAGE)
    if trainer.is_world_process_zero():  # under DDP (accelerate/torchrun) only rank 0 writes
        with atomic_path(dest) as tmp:
            student.save_pretrained(str(tmp))
        if project and inner.mse is not None:
            inner.mse.save_projection(out / "projection.safetensors")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the best one is student/ now
        log.info("train: student saved -> %s", dest)
    details = {
        "student": cfg.student.model, "teacher_id": art.manifest.get("teacher_id"), "student_dim": sdim, "teacher_dim": tdim,
        "losses": losses, "projection": ("learned" if project else "pca" if pca is not None else "none"),
        "matryoshka": matryoshka, "n_train_rows": len(dataset), "n_mse_texts": n_mse_texts,
        "n_mse_corpus_docs": n_mse_texts - len(mse_texts) if n_mse_texts else 0, "margin_teacher": margin_info,
        "negatives_per_query": s.negatives_per_query, "n_train_queries": len(train_qids),
        "n_val_queries": len(val_qids), "train_loss": float(trained.training_loss), "history": history, "best": best,
        "merged": merged, "n_anchor_texts": len(anchor),
    }
    if best is not None:
        log.info("train: best val NDCG@10 %.4f at step %d (before training %.4f); student -> %s",
                 best["val_ndcg@10"], best["step"], history[0]["val_ndcg@10"] if history else float("nan"), dest)
    result = TrainResult(STAGE, n_items=len(dataset) + n_mse_texts + len(anchor), train_steps=int(trainer.state.global_step), student=str(dest),
                         details=details)
    if margin_run is not None:
        result.count_labels(margin_run)
    return result


def _init_projection(inner: DistillationLoss, student: Any, dataset: Any, tdim: int, n: int = 512) -> float:
    """Ridge fit of teacher on student embeddings over up to ``n`` training texts (queries first)."""
    rows = dataset.select(range(min(len(dataset), n // 2)))
    texts = list(rows["anchor"]) + list(rows["positive"])
    labels = np.asarray(rows["label"], dtype=np.float32)
    teacher = np.concatenate([labels[:, :tdim], labels[:, tdim:2 * tdim]])
    emb = student.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    if inner.mse is None:
        raise RagdistillError("embedder train: a learned projection needs the mse loss")
    return inner.mse.init_projection(emb, teacher)


def _last_checkpoint(folder: Path) -> Path | None:
    """A checkpoint an interrupted run left behind (success removes the folder)."""
    if not folder.is_dir():
        return None
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None
