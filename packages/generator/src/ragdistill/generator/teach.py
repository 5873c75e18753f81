"""generator teach: the teacher answers training questions over retrieved contexts; filters keep the good ones.

Writes to ``<work_dir>/generator/teach/`` (beside ``teach.json``, whose ``details`` hold the filter
report: per filter, how many items it saw and dropped, its thresholds and examples):

- ``train.jsonl``: the kept set as chat-format JSONL (``{"messages": [system, user, assistant]}``),
  which TRL's SFTTrainer and Axolotl (``type: chat_template``) both read;
- ``labels.jsonl``: every teacher reply with its parsed answer and which filter dropped it, and why.

Teacher replies go through the label cache (resumable; the shipped labels are imported first).
:func:`add_queued_examples` is how the failure queue joins ``train.jsonl`` (``teach data.extra=queue``).
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import apply_run_settings
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir
from ragdistill.common.results import TeachResult
from ragdistill.generator.examples import QAExample, load_examples
from ragdistill.generator.filters import Candidate, FormatFilter, GroundingFilter, JudgeFilter, LengthFilter, run_filters
from ragdistill.generator.prompts import FormatError, build_messages, parse_reply, render_reply
from ragdistill.generator.teachers import ANSWER_TEMPLATE, JUDGE_TEMPLATE, answer_teacher, judge_teacher

log = get_logger(__name__)
STAGE = "generator"


def build_filters(cfg: Any, judge: Any = None, result: TeachResult | None = None) -> list[Any]:
    """The filters in order; ``judge`` (a cached teacher) adds the LLM-as-judge filter, its label counts into ``result``."""
    f = cfg.generator.teach.filters
    filters: list[Any] = [
        FormatFilter(cfg.generator.prompt),
        LengthFilter(f.min_length_pct, f.max_length_pct, f.max_answer_words),
        GroundingFilter(f.min_grounding),
    ]
    if judge is not None:

        def ask(convs: list[Any]) -> list[str | None]:
            run = judge.label(convs, JUDGE_TEMPLATE, desc="judge")
            if result is not None:
                result.count_labels(run)
                result.details["judge_labels"] = {"cached": run.cached, "labelled": run.labelled}
            return run.labels

        filters.append(JudgeFilter(ask, cfg.generator.prompt, f.judge.min_score))
    return filters


def chat_record(example: QAExample, target: str, prompt: Any) -> dict[str, Any]:
    """One training example in the chat format TRL and Axolotl read."""
    return {"messages": [*build_messages(example.question, example.contexts, prompt), {"role": "assistant", "content": target}]}


def teach(cfg: Any) -> TeachResult:
    """Label ``teach.max_train_questions`` train questions, filter, write ``train.jsonl`` and ``labels.jsonl``."""
    apply_run_settings(cfg)
    g = cfg.generator
    out = stage_dir(cfg, STAGE, "teach")
    examples = load_examples(cfg, cfg.data.train_split, g.teach.max_train_questions)
    result = TeachResult(STAGE, n_items=len(examples))
    teacher = answer_teacher(cfg)
    judge = judge_teacher(cfg) if g.teach.filters.judge.enabled else None
    try:
        convs = [build_messages(e.question, e.contexts, g.prompt) for e in examples]
        run = teacher.label(convs, ANSWER_TEMPLATE, desc="teacher answers")
        result.count_labels(run)
        # None: another shard's item (run.shard)
        candidates = [Candidate(e, r) for e, r in zip(examples, run.labels, strict=True) if r is not None]
        report = run_filters(candidates, build_filters(cfg, judge, result))
    finally:
        teacher.close()
        if judge is not None:
            judge.close()
    prompt = g.prompt
    kept = [chat_record(c.example, render_reply(c.parsed, prompt), prompt) for c in candidates if c.kept]
    write_jsonl(out / "train.jsonl", kept)
    write_jsonl(out / "labels.jsonl", [
        {"id": c.example.id, "question": c.example.question, "references": c.example.answers, "reply": c.reply,
         "answer": c.parsed.answer if c.parsed else None, "kept": c.kept, "dropped_by": c.dropped_by, "reason": c.reason,
         "scores": c.scores, "context_ids": [d.id for d in c.example.contexts]}
        for c in candidates
    ])
    result.kept = report["kept"]
    result.details.update({**report, "teacher": teacher.teacher_id, "questions": len(examples), "train_file": str(out / "train.jsonl"),
                           "teacher_labels": {"launcher": run.launcher, "cached": run.cached, "labelled": run.labelled}})
    per = ", ".join(f"{k}: -{v['dropped']}" for k, v in report["filters"].items())
    log.info(f"{report['total']} teacher answers ({run.cached} cached, {run.labelled} labelled, launcher={run.launcher}), "
          f"kept {report['kept']} ({per}) -> {out / 'train.jsonl'}")
    return result


def add_queued_examples(cfg: Any, items: list[tuple[Any, Any, str]]) -> dict[str, int]:
    """``teach data.extra=queue``: the failure queue's (conversation, teacher reply, template) items as
    chat records appended to ``teach/train.jsonl`` (the shared fold passes answer-template items only and
    counts the others). Each conversation once (one already taught is skipped), and only replies that
    follow the answer format (teach's first filter; length and grounding need the example's passages,
    which a queued conversation holds only as text): the others count as ``dropped_format``."""
    out = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
    rows = read_jsonl(out)
    have = {repr(r["messages"][:-1]) for r in rows}
    answers = [(conv, reply) for conv, reply, template in items if template == ANSWER_TEMPLATE]
    new = [(conv, reply) for conv, reply in answers if repr(conv) not in have]
    prompt, kept, bad = cfg.generator.prompt, [], len(items) - len(answers)
    for conv, reply in new:
        try:
            if not isinstance(conv, list):
                raise FormatError("a queued answer input is not a conversation")
            kept.append({"messages": [*conv, {"role": "assistant", "content": render_reply(parse_reply(reply, prompt), prompt)}]})
        except FormatError:
            bad += 1
    write_jsonl(out, rows + kept)
    info = {"already_taught": len(answers) - len(new), "kept": len(kept), "dropped_format": bad}
    log.info(f"data.extra: {len(items)} queued records, {len(kept)} new chat records kept ({bad} broke the format, "
          f"{info['already_taught']} already taught) -> {out}")
    return info
