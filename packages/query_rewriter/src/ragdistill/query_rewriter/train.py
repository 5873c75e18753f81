"""train: distil the teacher's rewrites/expansions into the student (sequence-level distillation).

Two model families, one recipe (teacher output = target, cross-entropy on the target tokens only):

* T5-family (``t5-small``, ``google/flan-t5-base``...): transformers' ``Seq2SeqTrainer``;
* decoder-only (the default ``smollm2-135m-instruct``, no T5 checkpoint is packaged): ``Trainer``
  on prompt + target sequences whose prompt tokens are labelled -100 (completion-only loss), so the
  student learns to write the rewrite, not to reproduce the conversation;
* encoder-only (``minilm-l6``): a term selector (term_selection.py), ``Trainer`` on token labels
  that tag the conversation words the target adds to the question (rewrites only); its tagging
  threshold is chosen with the checkpoint, on the same validation lift (``train.term_thresholds``).

``train.human_mix`` replaces that fraction of rewrite targets with the human CANARD rewrite, and
``train.human_records`` adds that many untaught records with their human rewrite as the target. The
kept checkpoint is the one with the highest validation ``recall_lift`` (BM25 recall with the
student's rewrites minus recall with the raw question, on records of the train split never taught;
see scoring.py), not the lowest loss: a low loss on teacher text is not what the rewriter is for.

Training options are transformers' own (``query_rewriter.train.args``, passed to ``TrainingArguments``,
or ``Seq2SeqTrainingArguments`` for an encoder-decoder student); the stage sets what the recipe
decides (output folder, evaluation schedule, seed, report_to).

Writes ``<work_dir>/query_rewriter/train/student`` (the chosen student); the validation history and
the kept step go into the train result (``train.json``).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.models import resolve_model
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.results import TrainResult
from ragdistill.common.training import build_training_args
from ragdistill.query_rewriter.config import StudentKind
from ragdistill.query_rewriter.examples import RewriteEvalSet, human_train_examples, validation_set
from ragdistill.query_rewriter.prompts import Example
from ragdistill.query_rewriter.retrieval import BM25Retriever
from ragdistill.query_rewriter.scoring import retrieval_metrics, rewrite_queries, with_lift
from ragdistill.query_rewriter.student import StudentRewriter, is_seq2seq, is_term_selector, load_tokenizer, source_text
from ragdistill.query_rewriter.term_selection import TermSelector, tag_rows, token_classifier

log = get_logger(__name__)
STAGE = "query_rewriter"


def load_targets(cfg: Any) -> list[tuple[Example, str]]:
    """teach's kept (example, target) pairs, with ``train.human_mix`` of the rewrites swapped for
    the human reference, then ``train.human_records`` human-only pairs."""
    path = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
    if not path.exists():
        raise RagdistillError(f"{path}: not found; run `ragdistill query_rewriter teach` first (same paths.work_dir)")
    rng = random.Random(int(cfg.run.seed))
    mix = float(cfg.query_rewriter.train.human_mix)
    if not 0.0 <= mix <= 1.0:
        raise RagdistillError(f"query_rewriter.train.human_mix={mix}: must be a fraction in [0, 1]")
    pairs = []
    for i, r in enumerate(read_jsonl(path), start=1):
        missing = [k for k in ("id", "task", "source", "question", "target") if k not in r]
        if missing:
            raise RagdistillError(f"{path}:{i}: missing key(s) {missing}; rerun `ragdistill query_rewriter teach`")
        ex = Example(r["id"], r["task"], r["source"], r["question"], tuple(r.get("history") or ()), r.get("reference"))
        target = r["target"]
        if ex.task == "rewrite" and ex.reference and rng.random() < mix:
            target = ex.reference
        pairs.append((ex, target))
    pairs += [(ex, str(ex.reference)) for ex in human_train_examples(cfg)]
    if not pairs:
        raise RagdistillError(f"{path}: no training targets; check `teach` (its teach.json lists the filter counts)")
    return pairs


def tokenize_pairs(tok: Any, pairs: list[tuple[Example, str]], seq2seq: bool, max_source: int, max_target: int,
                   decoder_start: int | None = None) -> list[dict[str, list[int]]]:
    """input_ids/labels per pair. Causal: prompt tokens (left-truncated) are masked with -100 and
    the target ends with EOS, so generation learns where to stop. Seq2seq: a leading
    ``decoder_start`` token in the labels is dropped (a BERT tokenizer writes [CLS] first, and
    [CLS] is already what the warm-started decoder starts from)."""
    rows = []
    for ex, target in pairs:
        src = source_text(tok, ex, seq2seq)
        if seq2seq:
            enc = tok(src, truncation=True, max_length=max_source)
            labels = tok(text_target=target, truncation=True, max_length=max_target)["input_ids"]
            if decoder_start is not None and labels[:1] == [decoder_start]:
                labels = labels[1:]
            rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
        else:
            p = tok(src, add_special_tokens=False)["input_ids"][-max_source:]
            t = tok(target + tok.eos_token, add_special_tokens=False)["input_ids"][:max_target]
            rows.append({"input_ids": p + t, "attention_mask": [1] * (len(p) + len(t)), "labels": [-100] * len(p) + t})
    return rows


class ValidationLift:
    """Greedy rewrites of the validation records -> BM25 metrics and recall lift vs the raw question.
    A term selector is scored at each of ``thresholds`` (one forward pass) and keeps the best one."""

    def __init__(self, val: RewriteEvalSet, batch_size: int = 8, thresholds: tuple[float, ...] = ()) -> None:
        self.val, self.batch_size, self.thresholds = val, batch_size, thresholds
        self.retriever = BM25Retriever(val.data.corpus)
        self.qrels = val.data.qrels[val.split]
        self.raw = retrieval_metrics(self.retriever, self.qrels, {r.id: r.question for r in val.records})

    def score(self, outs: list[str]) -> dict[str, float]:
        queries = rewrite_queries([r.id for r in self.val.records], outs, [r.question for r in self.val.records])
        return with_lift(retrieval_metrics(self.retriever, self.qrels, queries), self.raw)

    def __call__(self, rewriter: StudentRewriter | TermSelector) -> dict[str, float]:
        if isinstance(rewriter, TermSelector) and self.thresholds:
            scored = {t: self.score(o) for t, o in rewriter.generate_at(self.val.examples, list(self.thresholds), self.batch_size).items()}
            best = max(scored, key=lambda t: (scored[t]["recall_lift"], t))  # a tie keeps the higher threshold (fewer words)
            rewriter.threshold = best  # saved with the checkpoint (model config)
            return {**scored[best], "threshold": best}
        return self.score(rewriter.generate(self.val.examples, batch_size=self.batch_size))


def _trainer_class(base: type) -> type:
    """``base`` (Trainer or Seq2SeqTrainer) whose evaluate() is the validation recall lift."""

    class RecallLiftTrainer(base):  # type: ignore[misc, valid-type]
        lift: ValidationLift
        rewriter: StudentRewriter | TermSelector
        best_dir: Path
        history: list[dict[str, float]]
        best: tuple[float, int] | None = None  # (recall_lift, step) of the saved checkpoint

        def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
            m = self.lift(self.rewriter)
            step = self.state.global_step
            metrics = {f"{metric_key_prefix}_{k.replace('@', '_at_')}": v for k, v in m.items()}
            self.history.append({"step": step, **m})
            log.info("validation at step %d: recall_lift %.4f (recall@10 %.3f, @100 %.3f)%s", step, m["recall_lift"], m["recall@10"],
                     m["recall@100"], f" at threshold {m['threshold']}" if "threshold" in m else "")
            if self.best is None or m["recall_lift"] > self.best[0]:
                self.best = (m["recall_lift"], step)
                with atomic_path(self.best_dir) as tmp:
                    self.save_model(str(tmp))
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return RecallLiftTrainer


def train(cfg: Any) -> TrainResult:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForTokenClassification,
        DataCollatorForSeq2Seq,
        DataCollatorForTokenClassification,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        Trainer,
        TrainingArguments,
    )

    tc = cfg.query_rewriter.train
    out_dir = stage_dir(cfg, STAGE, "train")
    pairs = load_targets(cfg)
    if not cfg.student.model:
        raise RagdistillError("student.model is not set; pass student=smollm2-135m or student.model=<path or hub id, e.g. t5-small>")
    path = resolve_model(cfg.student.model)
    selector = is_term_selector(path)
    seq2seq = not selector and is_seq2seq(path)
    kind = StudentKind.term_selection if selector else StudentKind.seq2seq if seq2seq else StudentKind.causal
    tok = load_tokenizer(path)
    tok.padding_side, tok.truncation_side = "right", ("right" if seq2seq or selector else "left")
    if selector:
        dropped = sum(e.task != "rewrite" for e, _ in pairs)
        pairs = [(e, t) for e, t in pairs if e.task == "rewrite"]
        if not pairs:
            raise RagdistillError(f"{cfg.student.model} is encoder-only, so it trains as a term selector, which learns "
                                  "rewrites only, and there are no rewrite targets; teach with query_rewriter.teach.tasks "
                                  "including rewrite, or pass a generative student (student=smollm2-135m, a T5 id)")
        bad = [t for t in tc.term_thresholds if not 0.0 < float(t) < 1.0]
        if bad:
            raise RagdistillError(f"query_rewriter.train.term_thresholds has {bad}: each must be a probability in (0, 1)")
        if dropped:
            log.info("term selection has no expansion task: %d expansion targets not used", dropped)
    auto = AutoModelForTokenClassification if selector else AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = token_classifier(path, int(cfg.run.seed)) if selector else auto.from_pretrained(path, dtype=torch.float32)
    if selector:
        rows = tag_rows(tok, pairs, int(tc.max_source_length))
        positives = sum(v == 1 for r in rows for v in r["labels"])
        log.info("term selection: %d of %d conversation words tagged (terms the targets add to the question)",
                 positives, sum(v != -100 for r in rows for v in r["labels"]))
    else:
        rows = tokenize_pairs(tok, pairs, seq2seq, int(tc.max_source_length), int(tc.max_target_length),
                              getattr(model.config, "decoder_start_token_id", None) if seq2seq else None)
    train_ds = Dataset.from_list(rows)
    val = validation_set(cfg) if tc.select_best else None
    eval_ds = Dataset.from_list(rows[:1])  # Trainer wants one to schedule evaluation; evaluate() ignores it

    ckpt_dir = out_dir / "checkpoints"
    max_steps = int(tc.args.get("max_steps", -1))
    per_epoch = int(tc.eval_steps) <= 0
    eval_strategy = ("epoch" if per_epoch and max_steps <= 0 else "steps") if val else "no"
    eval_steps = int(tc.eval_steps) if int(tc.eval_steps) > 0 else max(max_steps, 1)
    # what the recipe decides (validation schedule, checkpoints: the best one is kept by ValidationLift), and
    # defaults the user may override in args
    fixed: dict[str, Any] = dict(
        output_dir=str(ckpt_dir), eval_strategy=eval_strategy, eval_steps=eval_steps if eval_strategy == "steps" else None,
        save_strategy="no", report_to=list(cfg.run.report_to), seed=int(cfg.run.seed), remove_unused_columns=False,
    )
    soft = dict(logging_steps=max(1, min(10, eval_steps)), use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                disable_tqdm=False)
    fixed.update({k: v for k, v in soft.items() if k not in tc.args})
    if seq2seq:
        args = build_training_args(Seq2SeqTrainingArguments, tc.args, "query_rewriter.train.args", predict_with_generate=False, **fixed)
    else:
        args = build_training_args(TrainingArguments, tc.args, "query_rewriter.train.args", **fixed)
    collator = (DataCollatorForTokenClassification(tok) if selector else
                DataCollatorForSeq2Seq(tok, model=model if seq2seq else None, label_pad_token_id=-100, padding=True))
    trainer_cls = _trainer_class(Seq2SeqTrainer if seq2seq else Trainer)
    trainer = trainer_cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds if val else None,
                          data_collator=collator, processing_class=tok)
    trainer.history = []
    trainer.best_dir = ckpt_dir / "best"
    if val:
        trainer.lift = ValidationLift(val, thresholds=tuple(float(t) for t in tc.term_thresholds) if selector else ())
        trainer.rewriter = (TermSelector(model, load_tokenizer(path), int(tc.max_source_length)) if selector
                            else StudentRewriter(model, load_tokenizer(path), seq2seq, int(tc.max_source_length)))
        trainer.rewriter.tok.truncation_side = tok.truncation_side
    log.info("distilling %d targets into %s (%s)", len(pairs), cfg.student.model, kind)
    result = trainer.train()

    best_dir = trainer.best_dir if trainer.best is not None and trainer.best_dir.is_dir() else None
    target = student_dir(cfg, STAGE)
    with atomic_path(target) as tmp:
        if best_dir is not None:
            src_model = auto.from_pretrained(best_dir, dtype=torch.float32)
            src_model.save_pretrained(tmp, safe_serialization=True)
        else:
            trainer.model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(path).save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    steps = int(trainer.state.global_step)
    details = {
        "student_model": cfg.student.model, "kind": str(kind),
        "tasks": {t: sum(e.task == t for e, _ in pairs) for t in ("rewrite", "expansion")},
        "human_records": int(tc.human_records), "train_loss": float(result.training_loss),
        "validation_base": trainer.lift.raw if val else None,
        "validation": trainer.history, "best_checkpoint_step": trainer.best[1] if trainer.best else None,
        "best_recall_lift": trainer.best[0] if trainer.best else None,
    }
    log.info(f"{steps} steps, loss {details['train_loss']:.4f}; "
          f"validation recall_lift per eval: {[round(h['recall_lift'], 4) for h in trainer.history]}; kept step {details['best_checkpoint_step']}")
    return TrainResult(STAGE, n_items=len(pairs), train_steps=steps, student=str(target), details=details)
