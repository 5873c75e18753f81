"""reranker calibrate: how sure the distilled student is of each ranking, and when to ask the teacher.

On the held-out split (the candidate lists ``evaluate`` reranks), per query: the student's
confidence (``routing.signal``: ``margin`` = top-1 minus top-2 score, ``neg_entropy`` = minus the
entropy of the softmax over the list, ``top_score``), the student's and the teacher's NDCG@10, and
their disagreement ((1 - Kendall tau) / 2). :func:`ragdistill.common.ops.routing_stage` then
picks the threshold for ``routing.max_teacher_fraction`` / ``routing.min_retention`` and writes
``<work_dir>/reranker/calibrate/routing_curve.{json,png}``, which :func:`routed` (the e2e
``pipeline.reranker=routed`` variant) reads. Teacher scores come through the label cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.metrics import evaluate_run
from ragdistill.common.routing import HeldOut, RoutedComponent, RoutingTarget, calibrate_stage, get_signal, load_calibration
from ragdistill.reranker.candidates import first_stage
from ragdistill.reranker.lists import PAIR_TEMPLATE, import_shipped_labels, load_data, open_cache, score_lists

STAGE = "reranker"
SIGNALS = ("margin", "neg_entropy", "top_score")
QUALITY = "ndcg@10"


def signal_name(cfg: Any) -> str:
    """``routing.signal`` or the stage default (margin); a signal that does not read a score list is an error."""
    name = str(cfg.routing.signal or "margin")
    if name not in SIGNALS:
        raise RagdistillError(f"routing.signal={name!r}: the reranker routes on its scores over the list; choose {', '.join(SIGNALS)}")
    return name


def confidence_fn(signal: str) -> Callable[[list[float]], float]:
    """Scores of one candidate list -> confidence (higher = surer)."""
    return get_signal(signal)


def _disagreement(student: list[float], teacher: list[float]) -> float:
    """(1 - Kendall tau) / 2 of the two score lists: 0 = same order, 1 = reversed (the monitor's measure)."""
    import math

    from scipy.stats import kendalltau

    if len(student) < 2:
        return 0.0
    tau = kendalltau(student, teacher).statistic
    return 0.5 if math.isnan(tau) else float((1 - tau) / 2)


def held_out_lists(cfg: Any) -> tuple[Any, dict, dict[str, Any]]:
    """The data, qrels and candidate lists ``evaluate`` reranks on the held-out split (two candidates at least)."""
    data = load_data(cfg)
    split = cfg.data.test_split
    _, qrels = data.split(split)
    cands = first_stage(data, split, int(cfg.reranker.candidates.eval_k), cfg.reranker.candidates.file)
    cands = {q: c for q, c in cands.items() if q in qrels and len(c.doc_ids) >= 2}
    if not cands:
        raise RagdistillError(f"no held-out candidate lists (split {split!r} of {(cfg.data.path or cfg.data.name)!r})")
    return data, qrels, cands


def held_out(cfg: Any) -> HeldOut:
    """Score every held-out candidate list with the distilled student and (from the cache) the teacher."""
    from ragdistill.reranker.component import component
    from ragdistill.reranker.teachers import make_teacher

    signal = signal_name(cfg)
    conf_of = confidence_fn(signal)
    data, qrels, cands = held_out_lists(cfg)
    teacher = make_teacher(cfg)
    cache = open_cache(cfg)
    try:
        import_shipped_labels(cfg, cache)
        scored = score_lists(teacher, cache, data, cands, int(cfg.teacher.batch_size), "reranker teacher scores (calibrate)")
    finally:
        cache.close()
    student = component(cfg, "student")
    qids = [s.query_id for s in scored]
    texts = {q: [data.corpus[d].full_text for d in cands[q].doc_ids] for q in qids}
    s_scores = {q: student(data.queries[q], texts[q]) for q in qids}
    t_scores = {s.query_id: s.teacher_scores for s in scored}

    def per_query(scores: dict[str, list[float]]) -> dict[str, float]:
        run = {q: dict(zip(cands[q].doc_ids, scores[q], strict=True)) for q in qids}
        res = evaluate_run({q: qrels[q] for q in qids}, run, [QUALITY], per_query=True)["per_query"]
        return {q: float(res[q][QUALITY]) for q in qids}

    sq, tq = per_query(s_scores), per_query(t_scores)
    return HeldOut(
        ids=qids, confidence=[conf_of(s_scores[q]) for q in qids], student_quality=[sq[q] for q in qids],
        teacher_quality=[tq[q] for q in qids], disagreement=[_disagreement(s_scores[q], t_scores[q]) for q in qids],
        signal=signal, quality_metric=QUALITY, teacher_id=teacher.teacher_id,
        queue=[([[data.queries[q], t] for t in texts[q]], list(t_scores[q]), PAIR_TEMPLATE) for q in qids],
    )


def calibrate(cfg: Any) -> dict[str, Any]:
    """``ragdistill reranker calibrate``: the routing threshold for the configured target, with its curve."""
    RoutingTarget.from_config(cfg.routing)  # a budget outside (0, 1) fails before any model loads
    signal_name(cfg)
    return calibrate_stage(cfg, STAGE, held_out(cfg))


class CachedTeacherScorer:
    """The teacher as a pipeline reranker whose scores go through the label cache (the key teach uses),
    so an input routed twice, or already labelled, costs no second teacher call."""

    def __init__(self, cfg: Any) -> None:
        from ragdistill.reranker.teachers import make_teacher

        self.teacher = make_teacher(cfg)
        self.teacher_id = self.teacher.teacher_id
        self.cache = open_cache(cfg)
        import_shipped_labels(cfg, self.cache)
        self.batch_size = int(cfg.teacher.batch_size)

    def __call__(self, query: str, docs: list[str]) -> list[float]:
        labels = self.cache.label([[query, d] for d in docs], lambda batch: self.teacher.score([(q, d) for q, d in batch]),
                                  self.teacher_id, PAIR_TEMPLATE, batch_size=self.batch_size, desc="reranker teacher (routed)")
        return [float(x) for x in labels]


def routed(cfg: Any) -> RoutedComponent:
    """``pipeline.reranker=routed``: the distilled student reranks; a list whose confidence is below the
    calibrated threshold is reranked by the teacher instead (and queued for the next round with ``routing.queue``)."""
    from ragdistill.reranker.component import component

    cal = load_calibration(stage_dir(cfg, STAGE, "calibrate"), STAGE)  # before loading any model
    conf_of = confidence_fn(cal.signal)
    student = component(cfg, "student")
    teacher = CachedTeacherScorer(cfg)
    hook = None
    if cfg.routing.queue:
        from ragdistill.common.ops.failure_queue import FailureQueue, queue_path

        queue = FailureQueue(queue_path(cfg, STAGE), teacher.cache)

        def hook(args: tuple, kwargs: dict, out: Any, conf: float) -> None:
            query, docs = args[0], args[1]
            queue.add_many([[query, d] for d in docs], list(out), teacher.teacher_id, PAIR_TEMPLATE, "routed", [conf] * len(docs))

    return RoutedComponent(student, teacher, lambda scores, *_: conf_of(scores), cal.threshold, cal.signal, hook)


def monitor_baseline(cfg: Any) -> dict[str, Any] | None:
    """What ``export`` writes for ``ragdistill monitor reranker``: student-vs-teacher divergence on the first
    ``monitor.baseline_inputs`` held-out candidate lists ``evaluate`` reranks (teacher scores from the cache)."""
    from ragdistill.common.ops.monitor import write_baseline
    from ragdistill.reranker.component import component

    n = int(cfg.monitor.baseline_inputs)
    if n <= 0:
        return None
    data, _, cands = held_out_lists(cfg)
    records = [{"query": data.queries[q], "docs": [data.corpus[d].full_text for d in cands[q].doc_ids]} for q in list(cands)[:n]]
    return write_baseline(cfg, STAGE, records, component(cfg, "student"), CachedTeacherScorer(cfg),
                          source=f"held-out {cfg.data.test_split}: {len(records)} candidate lists")
