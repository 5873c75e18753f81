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

from ragdistill.common.config import apply_run_settings
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import write_text_atomic
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.report import comparison_table
from ragdistill.common.results import EvaluateResult
from ragdistill.common.timing import stats_from_latencies
from ragdistill.generator.examples import QAExample, load_examples
from ragdistill.generator.models import is_model_dir
from ragdistill.generator.prompts import build_messages
from ragdistill.generator.scoring import aggregate, error_analysis, score_answers
from ragdistill.generator.teachers import (
    ANSWER_TEMPLATE,
    answer_teacher,
    judge_backend,
    teacher_max_new_tokens,
    undistilled_teacher,
)
from ragdistill.generator.variants import generator, model_path

log = get_logger(__name__)
STAGE = "generator"


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


def answer_all(gen: Any, conversations: list[Any], batch_size: int, desc: str) -> list[str]:
    """Every conversation answered, batch by batch, with a progress bar (a full split takes minutes on CPU)."""
    from tqdm.auto import tqdm

    out: list[str] = []
    with tqdm(total=len(conversations), desc=desc, unit="q") as bar:
        for i in range(0, len(conversations), batch_size):
            out += gen.generate(conversations[i : i + batch_size])
            bar.update(len(conversations[i : i + batch_size]))
    return out


def student_paths(cfg: Any) -> dict[str, str]:
    """``student_base`` = the configured student; ``student`` = the merged distilled model from train; the
    exports ``generator.evaluate.exports`` names (ONNX fp32 by default) where export wrote them."""
    merged = student_dir(cfg, STAGE)
    if not is_model_dir(merged):
        raise RagdistillError(f"{merged}: no distilled student; run `ragdistill generator train` first (it writes this folder)")
    systems = {"student_base": cfg.student.model, "student": str(merged)}
    for variant in cfg.generator.evaluate.exports:
        try:
            systems[str(variant)] = model_path(cfg, str(variant))
        except RagdistillError as e:
            log.info("evaluate: %s skipped (%s)", variant, e)
    return systems


def _judge_rows(examples: list[QAExample], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"question": e.question, "answer": r["answer"], "contexts": e.context_texts, "reference": e.answers[0] if e.answers else ""}
            for e, r in zip(examples, rows, strict=True)]


def evaluate(cfg: Any) -> EvaluateResult:
    """Teacher (from the label cache), undistilled student (cached too) and distilled student on the held-out questions."""
    from ragdistill.generator.students import LocalGenerator

    apply_run_settings(cfg)
    ev = cfg.generator.evaluate
    out = stage_dir(cfg, STAGE, "evaluate")
    systems = student_paths(cfg)
    examples = load_examples(cfg, cfg.data.test_split, ev.max_test_questions)
    prompt = cfg.generator.prompt
    convs = [build_messages(e.question, e.contexts, prompt) for e in examples]
    results: dict[str, dict[str, float]] = {}
    per_item: dict[str, list[dict[str, Any]]] = {}
    replies: dict[str, list[str]] = {}
    result = EvaluateResult(STAGE, n_items=len(examples), split=str(cfg.data.test_split))

    teacher = answer_teacher(cfg)
    try:
        run = teacher.label(convs, ANSWER_TEMPLATE, desc="teacher answers (test)")
    finally:
        teacher.close()
    result.count_labels(run)
    if any(r is None for r in run.labels):
        raise RagdistillError("evaluate needs the teacher's answer to every test question; run without run.shard")
    replies["teacher"] = list(run.labels)
    speed: dict[str, dict[str, float]] = {}
    if ev.teacher_latency_items > 0:
        speed["teacher"] = timed(teacher.generate, _tokenizer_of(teacher), convs[: ev.teacher_latency_items], max_new_tokens=teacher_max_new_tokens(cfg))

    for name, path in systems.items():
        t0 = time.perf_counter()
        if name == "student_base":  # a fixed checkpoint: its answers are cached like the teacher's
            base = undistilled_teacher(cfg)
            try:
                replies[name] = list(base.label(convs, ANSWER_TEMPLATE, desc="student_base answers (test)").labels)
            finally:
                base.close()
            gen = base.backend if ev.latency_items > 0 else None
        else:
            gen = LocalGenerator(path, int(cfg.generator.student_max_new_tokens), int(ev.batch_size)) if name == "student" \
                else generator(cfg, name, int(ev.batch_size))
            replies[name] = answer_all(gen, convs, int(ev.batch_size), f"{name} answers (test)")
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
    table = comparison_table(results, title=f"[{STAGE}] teacher vs student, before and after distillation")
    print(table, flush=True)
    write_text_atomic(out / "results.txt", table + "\n")
    result.results, result.details = results, extra
    ea = extra["error_analysis"]
    log.info("%d held-out questions; student errors: %s (inherited from the teacher: %s, compression: %s); fixed by distillation: %s, "
             "broken: %s -> %s", len(examples), ea["student_errors"], ea["inherited"], ea["compression"], ea.get("fixed_by_distillation"),
             ea.get("broken_by_distillation"), out / "results.json")
    return result


def _tokenizer_of(teacher: Any) -> Any:
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
    judge = judge_backend(cfg, rc.teacher or cfg.teacher)
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

