"""The reranker stage: a teacher's scores over first-stage candidate lists, distilled into a small
cross-encoder (ONNX fp32 + int8) and a ColBERT student.

The verbs live in their modules (``teach``, ``train``, ``export``, ``evaluate``; ``build_teacher``
in ``teachers``), imported when called, so ``import ragdistill.reranker`` loads no torch. The hooks
below are what calibrate, the ``routed`` variant, the monitor and the failure-queue rounds
(``ragdistill.common.ops``) are written on: a held-out input is one candidate list, its quality is
NDCG@10, the student's confidence reads its scores over the list, and the student-teacher distance
is (1 - Kendall tau) / 2 of the two score lists.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from ragdistill.common.pipeline import VARIANTS
from ragdistill.common.results import EvaluateResult, TeachResult
from ragdistill.common.stage import QueueItem, Record, Scorer, Stage
from ragdistill.reranker.config import RerankerConfig
from ragdistill.reranker.lists import PAIR_TEMPLATE

QUALITY = "ndcg@10"


class RerankerStage(Stage):
    name = "reranker"
    description = ("Cross-encoder teacher scores -> margin-MSE / listwise-KL into a small cross-encoder and a ColBERT student; "
                   "ONNX export")
    schema = RerankerConfig
    order = 30
    slot = "reranker"  # the e2e pipeline slot it fills
    teacher_capability = "score"
    variants = (*VARIANTS, "colbert_base", "colbert")
    call_fields = ("query", "docs")
    signals = ("margin", "neg_entropy", "top_score")
    quality_metric = QUALITY
    extra_verbs = ("build_teacher",)
    output_field: ClassVar[str] = "student_scores"  # a monitor log line may carry the student's scores

    # ---- the four verbs

    def teach(self, cfg: Any) -> TeachResult:
        from ragdistill.reranker.teach import teach

        with self.teacher(cfg) as teacher:
            return teach(cfg, teacher)

    def evaluate(self, cfg: Any) -> EvaluateResult:
        from ragdistill.reranker.evaluate import evaluate

        with self.teacher(cfg) as teacher:
            return evaluate(cfg, teacher)

    def build_teacher(self, cfg: Any) -> Path:
        """``ragdistill reranker build-teacher``: fine-tune and cache the bundled cross-encoder teacher."""
        from ragdistill.reranker.teachers import build_teacher

        return build_teacher(cfg)

    # ---- nouns

    def teacher(self, cfg: Any) -> Any:
        from ragdistill.reranker.teachers import cached_teacher

        return cached_teacher(cfg)

    def held_out(self, cfg: Any, n: int | None = None) -> list[Record]:
        """The held-out candidate lists evaluate reranks: ``{id, query, docs, doc_ids, qrels}``."""
        from ragdistill.reranker.lists import held_out_records

        return held_out_records(cfg, n)

    def predictor(self, cfg: Any, variant: str) -> Any:
        """Scores per record; the teacher's come from the label cache in one labelling call."""
        if variant != "teacher":
            return super().predictor(cfg, variant)
        from ragdistill.reranker.teachers import teacher_model_path

        teacher = self.teacher(cfg)

        def predict(records: list[Record]) -> list[list[float]]:
            pairs = [[r["query"], d] for r in records for d in r["docs"]]
            labels = teacher.labels(pairs, PAIR_TEMPLATE, desc="reranker teacher scores (held-out)") if pairs else []
            out, i = [], 0
            for r in records:
                out.append([float(x) for x in labels[i : i + len(r["docs"])]])
                i += len(r["docs"])
            return out

        predict.model_path = teacher_model_path(cfg)  # type: ignore[attr-defined]
        return predict

    def scorer(self, cfg: Any, signal: str) -> Scorer:
        """The distilled student's scores for each list, and ``signal`` of them as its confidence."""
        from ragdistill.common.signals import get_signal

        confidence = get_signal(signal)
        student = self.component(cfg, "student")

        def score(records: list[Record]) -> tuple[list[Any], list[float]]:
            outs = [student(r["query"], r["docs"]) for r in records]
            return outs, [float(confidence(o)) for o in outs]

        score.model_path = getattr(student, "model_path", None)  # type: ignore[attr-defined]
        return score

    def quality(self, cfg: Any, records: list[Record], outputs: list[Any]) -> list[float]:
        """NDCG@10 of each list's scores against its qrels."""
        from ragdistill.common.metrics import evaluate_run

        qrels = {r["id"]: r["qrels"] for r in records}
        run = {r["id"]: dict(zip(r["doc_ids"], o, strict=True)) for r, o in zip(records, outputs, strict=True)}
        per_query = evaluate_run(qrels, run, [QUALITY], per_query=True)["per_query"]
        return [float(per_query[r["id"]][QUALITY]) for r in records]

    def disagreement(self, record: Record, student: Any, teacher: Any) -> float:
        """(1 - Kendall tau) / 2 of the two score lists: 0 = same order, 1 = reversed."""
        return (1 - _kendall_tau(student, teacher)) / 2

    def divergence_metrics(self, records: list[Record], student: list[Any], teacher: list[Any]) -> dict[str, float]:
        """``ragdistill monitor``'s figures: the mean Kendall tau over the lists and its divergence."""
        import numpy as np

        taus = [_kendall_tau(s, t) for s, t in zip(student, teacher, strict=True)]
        tau = float(np.mean(taus)) if taus else 1.0
        return {"kendall_tau": tau, "divergence": (1 - tau) / 2}

    def queue_examples(self, cfg: Any, record: Record, teacher_output: Any) -> list[QueueItem]:
        """One ``[query, document text]`` pair per candidate, as teach labels it."""
        return [([record["query"], d], float(s), PAIR_TEMPLATE) for d, s in zip(record["docs"], teacher_output, strict=True)]

    def add_training_examples(self, cfg: Any, items: list[QueueItem]) -> dict[str, Any]:
        """Queued pairs regrouped into lists per query, ordered by the teacher, appended to teach's lists."""
        from ragdistill.reranker.lists import append_queued_lists

        return append_queued_lists(cfg, items)


def _kendall_tau(student: Any, teacher: Any) -> float:
    """Kendall tau of two score lists; 1 for a list of one, 0 when undefined (a constant list)."""
    from scipy.stats import kendalltau

    if len(student) < 2:
        return 1.0
    tau = kendalltau(student, teacher).statistic
    return 0.0 if math.isnan(tau) else float(tau)
