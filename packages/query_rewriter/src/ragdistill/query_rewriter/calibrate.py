"""query_rewriter calibrate: how sure the distilled student is of each rewrite, and when to ask the teacher.

On the held-out CANARD records ``evaluate`` rewrites, per record: the student's confidence
(``routing.signal=sequence_logprob``: mean log p(rewrite | prompt) under the student, teacher-forced
on the rewrite it generated), the student's and the teacher's recall lift (BM25 recall@10/@100 of
the rewrite minus the raw question's, averaged: the stage's headline, per record) and their
disagreement (1 - ROUGE-L of the two rewrites). :func:`ragdistill.common.ops.routing_stage`
picks the threshold and writes ``<work_dir>/query_rewriter/calibrate/routing_curve.{json,png}``,
which :func:`routed` (the e2e ``pipeline.rewriter=routed`` variant) reads. Teacher rewrites come
through the label cache (the key ``teach`` and ``evaluate`` use).
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.data import RewriteRecord
from ragdistill.common.errors import RagdistillError
from ragdistill.common.routing import HeldOut, RoutedComponent, RoutingTarget, calibrate_stage, load_calibration
from ragdistill.common.signals import sequence_logprob
from ragdistill.query_rewriter.filters import clean_output
from ragdistill.query_rewriter.prompts import Example, rewrite_example

STAGE = "query_rewriter"
SIGNALS = ("sequence_logprob",)
QUALITY = "recall_lift"


def signal_name(cfg: Any) -> str:
    """``routing.signal`` or the stage default (sequence_logprob)."""
    name = str(cfg.routing.signal or "sequence_logprob")
    if name not in SIGNALS:
        raise RagdistillError(f"routing.signal={name!r}: the rewriter routes on log p(rewrite | prompt); choose {', '.join(SIGNALS)}")
    return name


def rewrite_template(cfg: Any) -> str:
    """The label-cache template of a rewrite (what ``teach`` keys the teacher's rewrites by)."""
    from ragdistill.query_rewriter.examples import teacher_prompt
    from ragdistill.query_rewriter.teach import label_template, max_new_tokens

    return label_template(teacher_prompt(cfg), "rewrite", max_new_tokens(cfg, "rewrite"))


def pipeline_example(cfg: Any, history: list[str], question: str) -> Example:
    """The pipeline contract's (history, question) as the rewrite example teach and evaluate build."""
    t = cfg.query_rewriter.teach
    return rewrite_example(RewriteRecord("e2e", list(history), question), int(t.max_turns), int(t.max_answer_chars))


class ScoredRewriter:
    """The distilled (decoder-only) student rewriting greedily, with log p(rewrite | prompt) per rewrite."""

    def __init__(self, cfg: Any) -> None:
        from ragdistill.query_rewriter.student import StudentRewriter, is_term_selector

        path = stage_dir(cfg, STAGE, "train") / "model"
        if not (path / "config.json").is_file():
            raise RagdistillError(f"{path}: no trained student; run `ragdistill query_rewriter train` first (same paths.work_dir)")
        if is_term_selector(path):
            raise RagdistillError(f"{path}: routing scores a generative student (log p(rewrite | prompt)); a term-selection "
                                  "student has no such score and is not supported by calibrate/routed yet")
        self.rewriter = StudentRewriter.from_pretrained(str(path), int(cfg.query_rewriter.train.max_source_length))
        if self.rewriter.seq2seq:
            raise RagdistillError(f"{path}: routing scores a decoder-only student (log p(rewrite | prompt)); a seq2seq "
                                  "student (T5 family) is not supported by calibrate/routed yet")
        self.cfg = cfg
        self.batch_size = int(cfg.query_rewriter.evaluate.batch_size)
        self.model_path = str(path)
        self.last_confidence = float("nan")

    def outputs(self, examples: list[Example]) -> tuple[list[str], list[float]]:
        """Raw greedy outputs and their mean token log-probabilities."""
        from ragdistill.query_rewriter.student import source_text

        outs = self.rewriter.generate(examples, batch_size=self.batch_size)
        prompts = [source_text(self.rewriter.tok, e, False) for e in examples]
        return outs, sequence_logprob(self.rewriter.model, self.rewriter.tok, prompts, outs, mean=True, batch_size=self.batch_size)

    def __call__(self, history: list[str], question: str) -> str:
        (out,), (c,) = self.outputs([pipeline_example(self.cfg, history, question)])
        self.last_confidence = c
        return clean_output(out) or question


def held_out(cfg: Any) -> HeldOut:
    """Rewrite every held-out record with the distilled student and (from the cache) the teacher; score both."""
    from ragdistill.common.answer_metrics import rouge_l
    from ragdistill.common.metrics import evaluate_run
    from ragdistill.query_rewriter.examples import test_set
    from ragdistill.query_rewriter.retrieval import BM25Retriever
    from ragdistill.query_rewriter.scoring import rewrite_queries
    from ragdistill.query_rewriter.teach import LazyTeacher, label_teacher_id, open_cache, teacher_outputs

    signal = signal_name(cfg)
    student = ScoredRewriter(cfg)  # fails early without a trained student
    rw = test_set(cfg)
    cache = open_cache(cfg)
    try:
        t_outs = teacher_outputs(cfg, rw.examples, cache, LazyTeacher(cfg.teacher), desc="teacher (calibrate)")
    finally:
        cache.close()
    if any(o is None for o in t_outs):
        raise RagdistillError("calibrate needs the teacher's rewrite of every held-out record; run without run.shard")
    s_outs, conf = student.outputs(rw.examples)
    ids, raw = [r.id for r in rw.records], [r.question for r in rw.records]
    retriever, qrels = BM25Retriever(rw.data.corpus), rw.data.qrels[rw.split]

    def per_record(queries: dict[str, str]) -> dict[str, float]:
        res = evaluate_run(qrels, retriever.search(queries, k=100), ("recall@10", "recall@100"), per_query=True)["per_query"]
        return {q: (res[q]["recall@10"] + res[q]["recall@100"]) / 2 for q in ids}

    base = per_record(dict(zip(ids, raw, strict=True)))
    sq = per_record(rewrite_queries(ids, s_outs, raw))
    tq = per_record(rewrite_queries(ids, [o or "" for o in t_outs], raw))
    return HeldOut(
        ids=ids, confidence=conf, student_quality=[sq[i] - base[i] for i in ids], teacher_quality=[tq[i] - base[i] for i in ids],
        disagreement=[1.0 - rouge_l(clean_output(s) or q, [clean_output(t or "") or q]) for s, t, q in zip(s_outs, t_outs, raw, strict=True)],
        signal=signal, quality_metric=QUALITY, teacher_id=label_teacher_id(cfg.teacher),
        queue=[([e.source], [t], rewrite_template(cfg)) for e, t in zip(rw.examples, t_outs, strict=True)],
    )


def calibrate(cfg: Any) -> dict[str, Any]:
    """``ragdistill query_rewriter calibrate``: the routing threshold for the configured target, with its curve."""
    RoutingTarget.from_config(cfg.routing)  # a budget outside (0, 1) fails before any model loads
    signal_name(cfg)
    return calibrate_stage(cfg, STAGE, held_out(cfg))


class CachedTeacherRewriter:
    """The teacher as a pipeline rewriter whose outputs go through the label cache (the key teach uses);
    keeps the last raw output and example, which is what the failure queue stores."""

    def __init__(self, cfg: Any) -> None:
        from ragdistill.query_rewriter.teach import LazyTeacher, label_teacher_id, open_cache

        self.cfg = cfg
        self.teacher, self.cache = LazyTeacher(cfg.teacher), open_cache(cfg)
        self.teacher_id = label_teacher_id(cfg.teacher)
        self.last_output, self.last_example = "", None

    def __call__(self, history: list[str], question: str) -> str:
        from ragdistill.query_rewriter.teach import teacher_outputs

        ex = pipeline_example(self.cfg, history, question)
        self.last_example = ex
        self.last_output = teacher_outputs(self.cfg, [ex], self.cache, self.teacher, desc="query_rewriter teacher (routed)")[0] or ""
        return clean_output(self.last_output) or question


def routed(cfg: Any) -> RoutedComponent:
    """``pipeline.rewriter=routed``: the distilled student rewrites; a rewrite whose confidence is below the
    calibrated threshold is replaced by the teacher's (and queued for the next round with ``routing.queue``)."""
    cal = load_calibration(stage_dir(cfg, STAGE, "calibrate"), STAGE)  # before loading any model
    student = ScoredRewriter(cfg)
    teacher = CachedTeacherRewriter(cfg)
    hook = None
    if cfg.routing.queue:
        from ragdistill.common.ops.failure_queue import FailureQueue, queue_path

        queue, template = FailureQueue(queue_path(cfg, STAGE), teacher.cache), rewrite_template(cfg)

        def hook(args: tuple, kwargs: dict, out: Any, conf: float) -> None:
            queue.add(teacher.last_example.source, teacher.last_output, teacher.teacher_id, template, "routed", conf)

    return RoutedComponent(student, teacher, lambda *_: student.last_confidence, cal.threshold, cal.signal, hook)


def monitor_baseline(cfg: Any) -> dict[str, Any] | None:
    """What ``export`` writes for ``ragdistill monitor query_rewriter``: student-vs-teacher divergence on the
    first ``monitor.baseline_inputs`` held-out records ``evaluate`` rewrites (teacher rewrites from the cache)."""
    from ragdistill.common.ops.monitor import write_baseline
    from ragdistill.query_rewriter.component import component
    from ragdistill.query_rewriter.examples import test_set

    n = min(int(cfg.monitor.baseline_inputs), int(cfg.query_rewriter.evaluate.test_records))
    if n <= 0:
        return None
    records = [{"history": list(r.history), "question": r.question} for r in test_set(cfg).records[:n]]
    return write_baseline(cfg, STAGE, records, component(cfg, "student"), CachedTeacherRewriter(cfg),
                          source=f"held-out {cfg.data.test_split}: {len(records)} records")
