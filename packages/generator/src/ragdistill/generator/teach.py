"""generator teach: the teacher answers training questions over retrieved contexts; filters keep the good ones.

Writes to ``<work_dir>/generator/teach/``:

- ``train.jsonl``: the kept set as chat-format JSONL (``{"messages": [system, user, assistant]}``),
  which TRL's SFTTrainer and Axolotl (``type: chat_template``) both read;
- ``labels.jsonl``: every teacher reply with its parsed answer and which filter dropped it, and why;
- ``filter_report.json``: per filter, how many items it saw and dropped, its thresholds and examples.

Teacher replies go through the label cache (resumable; shipped labels are imported first).
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import apply_run_settings, stage_dir
from ragdistill.common.io import write_json, write_jsonl
from ragdistill.common.labelling import LabelRun
from ragdistill.common.logging import get_logger
from ragdistill.generator.examples import QAExample, load_examples
from ragdistill.generator.filters import Candidate, FormatFilter, GroundingFilter, JudgeFilter, LengthFilter, run_filters
from ragdistill.generator.prompts import build_messages, render_reply
from ragdistill.generator.teachers import LazyTeacher, answer_cached, answer_run, open_cache, teacher_key

log = get_logger(__name__)
ANSWER_TEMPLATE = "generator:answer:v1"
JUDGE_TEMPLATE = "generator:judge:v1"


def teacher_max_new_tokens(cfg: Any) -> int:
    return int(cfg.generator.teach.rationale_max_new_tokens if cfg.generator.prompt.rationale else cfg.teacher.max_new_tokens)


def teacher_answer_run(cfg: Any, examples: list[QAExample], teacher: LazyTeacher | None = None, cache: Any = None,
                       desc: str = "teacher answers") -> LabelRun:
    """The teacher's raw replies for ``examples`` with counts (cached; computed only when missing,
    where ``run.launcher`` says: here, on this shard, or on Ray workers)."""
    own = cache is None
    cache = cache or open_cache(cfg)
    teacher = teacher or LazyTeacher(cfg.teacher)
    try:
        convs = [build_messages(e.question, e.contexts, cfg.generator.prompt) for e in examples]
        return answer_run(cache, teacher, convs, ANSWER_TEMPLATE, teacher_max_new_tokens(cfg), desc=desc, launch=cfg)
    finally:
        if own:
            cache.close()


def teacher_answers(cfg: Any, examples: list[QAExample], teacher: LazyTeacher | None = None, cache: Any = None, desc: str = "teacher answers") -> list[str | None]:
    """The teacher's raw replies for ``examples`` (cached; computed only when missing)."""
    return teacher_answer_run(cfg, examples, teacher, cache, desc).labels


def build_filters(cfg: Any, cache: Any) -> list[Any]:
    f = cfg.generator.filters
    filters: list[Any] = [
        FormatFilter(cfg.generator.prompt),
        LengthFilter(f.min_length_pct, f.max_length_pct, f.max_answer_words),
        GroundingFilter(f.min_grounding),
    ]
    if f.judge.enabled:
        judge = LazyTeacher(f.judge.teacher or cfg.teacher)

        def ask(convs: list[Any]) -> list[str | None]:
            return answer_cached(cache, judge, convs, JUDGE_TEMPLATE, f.judge.max_new_tokens, desc="judge", launch=cfg)

        filters.append(JudgeFilter(ask, cfg.generator.prompt, f.judge.min_score))
    return filters


def chat_record(example: QAExample, target: str, prompt: Any) -> dict[str, Any]:
    """One training example in the chat format TRL and Axolotl read."""
    return {"messages": [*build_messages(example.question, example.contexts, prompt), {"role": "assistant", "content": target}]}


def teach(cfg: Any) -> dict[str, Any]:
    apply_run_settings(cfg)
    out = stage_dir(cfg, "generator", "teach")
    examples = load_examples(cfg, cfg.data.train_split, cfg.generator.teach.max_train_questions)
    cache = open_cache(cfg)
    try:
        run = teacher_answer_run(cfg, examples, cache=cache)
        replies = run.labels
        present = [(e, r) for e, r in zip(examples, replies, strict=True) if r is not None]  # None: another shard's item
        candidates = [Candidate(e, r) for e, r in present]
        report = run_filters(candidates, build_filters(cfg, cache))
    finally:
        cache.close()
    prompt = cfg.generator.prompt
    kept = [chat_record(c.example, render_reply(c.parsed, prompt), prompt) for c in candidates if c.kept]
    write_jsonl(out / "train.jsonl", kept)
    write_jsonl(out / "labels.jsonl", [
        {"id": c.example.id, "question": c.example.question, "references": c.example.answers, "reply": c.reply,
         "answer": c.parsed.answer if c.parsed else None, "kept": c.kept, "dropped_by": c.dropped_by, "reason": c.reason,
         "scores": c.scores, "context_ids": [d.id for d in c.example.contexts]}
        for c in candidates
    ])
    report.update({"teacher": teacher_key(cfg.teacher, teacher_max_new_tokens(cfg)), "questions": len(examples), "train_file": str(out / "train.jsonl"),
                   "teacher_labels": {"launcher": run.launcher, "cached": run.cached, "labelled": run.labelled}})
    write_json(out / "filter_report.json", report)
    per = ", ".join(f"{k}: -{v['dropped']}" for k, v in report["filters"].items())
    log.info("teach: %d teacher answers, kept %d (%s) -> %s", report["total"], report["kept"], per, out / "train.jsonl")
    print(f"[generator teach] {report['total']} teacher answers ({run.cached} cached, {run.labelled} labelled, launcher={run.launcher}), "
          f"kept {report['kept']} ({per}) -> {out / 'train.jsonl'}", flush=True)
    return report
