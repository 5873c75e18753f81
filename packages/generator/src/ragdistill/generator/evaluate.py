"""generator evaluate: teacher, undistilled student and distilled student side by side on held-out questions.

Every system answers the same held-out test questions (articles training never saw) over the same
contexts with the same prompt. Scores: answer correctness against the references (SQuAD exact
match, token F1), ragas' non-LLM metrics (BLEU, ROUGE-L, string similarity, exact match), the
grounding proxy for faithfulness, format compliance, and speed (generated tokens/s, p50/p95
latency per answer, answering one question at a time). Optionally ragas' LLM-judged metrics
through a judge backend, with failures counted. Error analysis: each distilled-student error is
``inherited`` (the teacher was wrong too) or ``compression`` (the teacher was right).

The teacher's answers come through the label cache (same key as ``teach``: a cached answer is the
one the teacher gives); its speed is timed live on ``teacher_latency_items`` questions.
"""

from __future__ import annotations

import time
from typing import Any

from ragdistill.common.config import apply_run_settings, stage_dir
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.report import write_comparison
from ragdistill.common.timing import stats_from_latencies
from ragdistill.generator.examples import QAExample, load_examples
from ragdistill.generator.models import is_model_dir
from ragdistill.generator.prompts import build_messages
from ragdistill.generator.scoring import aggregate, error_analysis, score_answers
from ragdistill.generator.teach import ANSWER_TEMPLATE, teacher_answers, teacher_max_new_tokens
from ragdistill.generator.teachers import LazyTeacher, answer_cached, open_cache

log = get_logger(__name__)


class LocalGenerator:
    """A local HF causal LM answering chat prompts (greedy), through common's causal-LM backend."""

    def __init__(self, path: str, max_new_tokens: int, batch_size: int = 8) -> None:
        from ragdistill.common.teachers.local import HFCausalLMTeacher
        from ragdistill.generator.models import load_tokenizer

        self.backend = HFCausalLMTeacher(path, max_new_tokens=max_new_tokens, batch_size=batch_size)
        self.backend.tokenizer = load_tokenizer(path, padding_side="left")  # the model's real end-of-turn token
        self.tokenizer = self.backend.tokenizer
        self.teacher_id = self.backend.teacher_id

    def generate(self, conversations: list[Any], **overrides: Any) -> list[str]:
        return self.backend.generate(conversations, **overrides)


def count_tokens(tokenizer: Any, texts: list[str]) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def timed(generate: Any, tokenizer: Any, conversations: list[Any], **overrides: Any) -> dict[str, float]:
    """Answer one question at a time: p50/p95 latency per answer and generated tokens/s."""
    if not conversations:
        return {}
    generate(conversations[:1], **overrides)  # warm-up
    lat, toks = [], 0
    for c in conversations:
        t = time.perf_counter()
        out = generate([c], **overrides)
        lat.append(time.perf_counter() - t)
        toks += count_tokens(tokenizer, out)
    s = stats_from_latencies(lat, len(conversations))
    return {"tokens_per_s": toks / sum(lat), "latency_p50_ms": s.p50_ms, "latency_p95_ms": s.p95_ms}


def undistilled_student(cfg: Any) -> LazyTeacher:
    """The student before distillation as a cached generation backend (key: model + decoding settings)."""
    max_new, bs = int(cfg.generator.student_max_new_tokens), int(cfg.generator.evaluate.batch_size)
    key = {"backend": "causal_lm", "model": cfg.student.model, "temperature": 0.0, "max_new_tokens": max_new, "batch_size": bs}
    return LazyTeacher(key, factory=lambda: LocalGenerator(cfg.student.model, max_new, bs))


def student_paths(cfg: Any) -> dict[str, str]:
    """``student_base`` = the configured student; ``student`` = the merged distilled model from train."""
    merged = stage_dir(cfg, "generator", "train") / "merged"
    if not is_model_dir(merged):
        raise RagdistillError(f"{merged}: no distilled student; run `ragdistill generator train` first (it writes this folder)")
    return {"student_base": cfg.student.model, "student": str(merged)}


def _judge_rows(examples: list[QAExample], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"question": e.question, "answer": r["answer"], "contexts": e.context_texts, "reference": e.answers[0] if e.answers else ""}
            for e, r in zip(examples, rows, strict=True)]


def evaluate(cfg: Any) -> dict[str, Any]:
    apply_run_settings(cfg)
    ev = cfg.generator.evaluate
    out = stage_dir(cfg, "generator", "evaluate")
    systems = student_paths(cfg)
    examples = load_examples(cfg, cfg.data.test_split, ev.max_test_questions)
    prompt = cfg.generator.prompt
    convs = [build_messages(e.question, e.contexts, prompt) for e in examples]
    results: dict[str, dict[str, float]] = {}
    per_item: dict[str, list[dict[str, Any]]] = {}
    replies: dict[str, list[str]] = {}

    cache = open_cache(cfg)
    teacher = LazyTeacher(cfg.teacher)
    try:
        t_replies = teacher_answers(cfg, examples, teacher=teacher, cache=cache, desc="teacher answers (test)")
    finally:
        cache.close()
    if any(r is None for r in t_replies):
        raise RagdistillError("evaluate needs the teacher's answer to every test question; run without run.shard")
    replies["teacher"] = list(t_replies)
    speed: dict[str, dict[str, float]] = {}
    if ev.teacher_latency_items > 0:
        speed["teacher"] = timed(teacher.generate, _tokenizer_of(teacher), convs[: ev.teacher_latency_items], max_new_tokens=teacher_max_new_tokens(cfg))

    for name, path in systems.items():
        t0 = time.perf_counter()
        if name == "student_base":  # a fixed checkpoint: its answers are cached like the teacher's
            base = undistilled_student(cfg)
            cache = open_cache(cfg)
            try:
                replies[name] = list(answer_cached(cache, base, convs, ANSWER_TEMPLATE, desc="student_base answers (test)"))
            finally:
                cache.close()
            gen = base.backend if ev.latency_items > 0 else None
        else:
            gen = LocalGenerator(path, int(cfg.generator.student_max_new_tokens), int(ev.batch_size))
            replies[name] = gen.generate(convs)
        log.info("%s answered %d questions in %.1fs", name, len(convs), time.perf_counter() - t0)
        if gen is not None and ev.latency_items > 0:
            speed[name] = timed(gen.generate, gen.tokenizer, convs[: ev.latency_items])
        del gen

    for name, reps in replies.items():
        per_item[name] = score_answers(examples, reps, prompt)
        results[name] = {**aggregate(per_item[name]), **speed.get(name, {})}

    extra: dict[str, Any] = {"questions": len(examples), "teacher": teacher.teacher_id, "systems": {"teacher": cfg.teacher.model, **systems},
                             "error_analysis": error_analysis(examples, per_item, ev.max_examples),
                             "speed_note": f"teacher timed on {ev.teacher_latency_items} questions, students on {ev.latency_items}, one question at a time"}
    if ev.ragas.enabled:
        extra["ragas_llm"] = _ragas_llm(cfg, examples, per_item, results)
    extra["answers"] = [{"id": e.id, "question": e.question, "references": e.answers, **{s: per_item[s][i]["answer"] for s in per_item}}
                        for i, e in enumerate(examples)]
    payload = write_comparison(out, "generator", results, extra=extra)
    ea = extra["error_analysis"]
    print(f"[generator evaluate] {len(examples)} held-out questions; student errors: {ea['student_errors']} "
          f"(inherited from the teacher: {ea['inherited']}, compression: {ea['compression']}); "
          f"fixed by distillation: {ea.get('fixed_by_distillation')}, broken: {ea.get('broken_by_distillation')} -> {out / 'results.json'}", flush=True)
    return payload


def _tokenizer_of(teacher: LazyTeacher) -> Any:
    tok = getattr(teacher.backend, "tokenizer", None)
    if tok is not None:
        return tok
    from ragdistill.generator.models import load_tokenizer

    try:  # remote backends: count with the model's tokenizer when it is local, else by words
        return load_tokenizer(teacher.cfg.model)
    except Exception:
        return lambda t, add_special_tokens=False: {"input_ids": t.split()}


def _ragas_llm(cfg: Any, examples: list[QAExample], per_item: dict[str, list[dict[str, Any]]], results: dict[str, dict[str, float]]) -> dict[str, Any]:
    from ragdistill.generator.ragas_judge import ANSWER_METRICS, CONTEXT_METRICS, build_metrics, score_ragas

    rc = cfg.generator.evaluate.ragas
    judge = LazyTeacher(rc.teacher or cfg.teacher)
    metrics, llm = build_metrics(list(rc.metrics), judge, rc.embeddings)
    n = int(rc.max_questions)
    report: dict[str, Any] = {"judge": judge.teacher_id, "questions": min(n, len(examples)), "by_system": {}}
    for name, rows in per_item.items():
        res = score_ragas(metrics, _judge_rows(examples[:n], rows[:n]), ANSWER_METRICS)
        report["by_system"][name] = res
        for m, r in res.items():
            results[name][f"ragas_{m}"] = r["mean"] if r["mean"] is not None else float("nan")
            results[name][f"ragas_{m}_failed"] = float(r["failed"])
    report["contexts"] = score_ragas(metrics, _judge_rows(examples[:n], per_item["teacher"][:n]), CONTEXT_METRICS)
    report["judge_calls"], report["judge_failures"] = llm.calls, llm.failures
    return report

