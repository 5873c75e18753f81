"""The query_rewriter stage: the four verbs and the hooks the shared operations (calibrate, the
``routed`` variant, the monitor, rounds, export-labels) are written on.

Imports nothing heavy at module level (``ragdistill --help`` loads every stage): each method imports
the module that does the work.

- held-out inputs are the CANARD test records ``evaluate`` rewrites, as
  ``{"id", "history", "question", "reference"}`` (the monitor's log lines need ``history`` and
  ``question``; a logged ``rewrite`` is the student's output, not re-run);
- confidence (``sequence_logprob``): the distilled decoder-only student's mean log p(rewrite | prompt),
  teacher-forced on the rewrite it generated (a term selector or a seq2seq student is an error);
- quality (``recall_lift``): per record, BM25 recall@10/@100 (mean) with the rewrite minus with the raw question;
- disagreement: 1 - ROUGE-L of the cleaned student and teacher rewrites.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.stage import Predictor, QueueItem, Record, Scorer, Stage
from ragdistill.query_rewriter.config import QueryRewriterConfig


class QueryRewriterStage(Stage):
    name = "query_rewriter"
    description = "Teacher rewrites/expansions -> seq2seq/decoder student; ONNX export; recall-lift evaluation"
    schema = QueryRewriterConfig
    order = 10
    slot = "rewriter"  # the e2e pipeline's first step
    teacher_capability = "generate"  # an LLM teacher: priced per token by `ragdistill cost`
    variants = ("teacher", "student_base", "student", "student_onnx", "student_onnx_int8")
    call_fields = ("history", "question")
    signals = ("sequence_logprob",)
    quality_metric = "recall_lift"
    output_field = "rewrite"  # a monitor log line may carry the student's rewrite

    # ---- nouns (the four verbs are the base class's: ragdistill.query_rewriter.<verb>.<verb>(cfg))

    def teacher(self, cfg: Any) -> Any:
        from ragdistill.query_rewriter.labels import cached_teacher

        return cached_teacher(cfg)

    def export_files(self, cfg: Any) -> dict[str, Any]:
        """``prompt.json`` in the exported folders: the input format the student was trained on (a caller
        cannot rebuild it from the ONNX graph), with a real held-out example rendered."""
        from ragdistill.query_rewriter.examples import test_set
        from ragdistill.query_rewriter.prompts import prompt_spec

        return {"prompt.json": prompt_spec(cfg.query_rewriter.teach, test_set(cfg).examples[0])}

    def predictor(self, cfg: Any, variant: str) -> Predictor:
        from ragdistill.query_rewriter.component import predictor

        return predictor(cfg, variant)

    def held_out(self, cfg: Any, n: int | None = None) -> list[Record]:
        from ragdistill.query_rewriter.examples import test_set

        return [{"id": r.id, "history": list(r.history), "question": r.question, "reference": r.rewrite}
                for r in test_set(cfg).records[:n]]

    def scorer(self, cfg: Any, signal: str) -> Scorer:
        from ragdistill.query_rewriter.component import record_example
        from ragdistill.query_rewriter.student import ScoredRewriter

        if signal not in self.signals:
            raise RagdistillError(f"routing.signal={signal!r}: the rewriter routes on log p(rewrite | prompt); choose {', '.join(self.signals)}")
        student = ScoredRewriter(cfg)  # fails early without a trained decoder-only student

        def score(records: list[Record]) -> tuple[list[Any], list[float]]:
            return student.outputs([record_example(cfg, r) for r in records])

        score.model_path = student.model_path  # type: ignore[attr-defined]
        return score

    def as_output(self, output: Any, record: Record) -> Any:
        from ragdistill.query_rewriter.component import as_rewrite

        return as_rewrite(output, record)

    def quality(self, cfg: Any, records: list[Record], outputs: list[Any]) -> list[float]:
        from ragdistill.query_rewriter.examples import test_set
        from ragdistill.query_rewriter.retrieval import BM25Retriever
        from ragdistill.query_rewriter.scoring import recall_per_query, rewrite_queries

        rw = test_set(cfg)
        qrels = rw.data.qrels[rw.split]
        ids = [str(r["id"]) for r in records]
        unknown = [i for i in ids if i not in qrels]
        if unknown:
            raise RagdistillError(f"query_rewriter quality: records {unknown[:3]} are not held-out test records (held_out() gives them)")
        qrels = {i: qrels[i] for i in ids}
        retriever, raw = BM25Retriever(rw.data.corpus), [r["question"] for r in records]
        base = recall_per_query(retriever, qrels, dict(zip(ids, raw, strict=True)))
        mine = recall_per_query(retriever, qrels, rewrite_queries(ids, [o or "" for o in outputs], raw))
        return [mine[i] - base[i] for i in ids]

    def disagreement(self, record: Record, student: Any, teacher: Any) -> float:
        from ragdistill.common.answer_metrics import rouge_l

        return 1.0 - rouge_l(self.as_output(student, record), [self.as_output(teacher, record)])

    def divergence_metrics(self, records: list[Record], student: list[Any], teacher: list[Any]) -> dict[str, float]:
        """The monitor's figures: ROUGE-L and token-F1 agreement of the cleaned rewrites; divergence = 1 - ROUGE-L."""
        import numpy as np

        from ragdistill.common.answer_metrics import rouge_l, token_f1

        pairs = [(self.as_output(s, r), self.as_output(t, r)) for r, s, t in zip(records, student, teacher, strict=True)]
        if not pairs:
            return {"divergence": 0.0}
        rl = [rouge_l(s, [t]) for s, t in pairs]
        f1 = [token_f1(s, [t]) for s, t in pairs]
        return {"rouge_l_agreement": float(np.mean(rl)), "token_f1_agreement": float(np.mean(f1)), "divergence": float(1 - np.mean(rl))}

    def queue_examples(self, cfg: Any, record: Record, teacher_output: Any) -> list[QueueItem]:
        from ragdistill.query_rewriter.component import record_example
        from ragdistill.query_rewriter.labels import task_template

        return [(record_example(cfg, record).source, teacher_output, task_template(cfg, "rewrite"))]

    def add_training_examples(self, cfg: Any, items: list[QueueItem]) -> dict[str, Any]:
        from ragdistill.query_rewriter.labels import label_teacher_id
        from ragdistill.query_rewriter.teach import add_queued_targets

        return add_queued_targets(cfg, items, label_teacher_id(cfg.teacher))
