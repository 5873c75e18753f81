"""generator rounds: ``teach data.extra=queue`` folds the failure queue into the training set;
``next-round`` keeps this round's student, ``compare-rounds`` puts the rounds side by side.

A queued record's input is a teach payload: the chat conversation (system + user turn with the
contexts and question) under ``generator:answer:v1``. Folding gets the teacher's reply through the
label cache (seeded from the queue: no teacher call when the teacher is the same), keeps replies that
follow the answer format (teach's first filter: length and grounding need the example's passages,
which a queued conversation holds only as text) and appends them to ``teach/train.jsonl`` as chat records.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.ops.failure_queue import extra_inputs
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.ops.rounds import compare_rounds as _compare
from ragdistill.common.ops.rounds import snapshot_round, teach_with_queue
from ragdistill.generator.teach import teach as base_teach

STAGE = "generator"


def fold_queue(cfg: Any) -> dict[str, Any] | None:
    """Append the queue's conversations with the teacher's replies (format-checked) to ``teach/train.jsonl``."""
    from ragdistill.common.errors import RagdistillError
    from ragdistill.generator.prompts import FormatError, parse_reply, render_reply
    from ragdistill.generator.teach import ANSWER_TEMPLATE, teacher_max_new_tokens
    from ragdistill.generator.teachers import LazyTeacher, answer_run, open_cache

    if not cfg.data.get("extra"):
        return None
    cache = open_cache(cfg)
    try:
        records = extra_inputs(cfg, STAGE, cache)
        if not records:
            return None
        out = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
        rows = read_jsonl(out)
        have = {repr(r["messages"][:-1]) for r in rows}
        convs = [r.input for r in records if r.template == ANSWER_TEMPLATE and isinstance(r.input, list)]
        new = [c for c in convs if repr(c) not in have]
        run = answer_run(cache, LazyTeacher(cfg.teacher), new, ANSWER_TEMPLATE, teacher_max_new_tokens(cfg), desc="teacher answers (queue)", launch=cfg)
    finally:
        cache.close()
    if any(r is None for r in run.labels):
        raise RagdistillError("data.extra=queue: some queued inputs belong to another shard; fold the queue without run.shard")
    prompt, kept, bad = cfg.generator.prompt, [], 0
    for conv, reply in zip(new, run.labels, strict=True):
        try:
            kept.append({"messages": [*conv, {"role": "assistant", "content": render_reply(parse_reply(reply, prompt), prompt)}]})
        except FormatError:
            bad += 1
    write_jsonl(out, rows + kept)
    info = {"records": len(records), "other_template": len(records) - len(convs), "already_taught": len(convs) - len(new),
            "kept": len(kept), "dropped_format": bad, "teacher_labels": {"cached": run.cached, "labelled": run.labelled}}
    print(f"[generator teach] data.extra: {len(records)} queued records, {len(kept)} new chat records kept ({bad} broke the format, "
          f"{info['already_taught']} already taught); teacher calls for them: {run.labelled} -> {out}", flush=True)
    return info


def teach(cfg: Any) -> dict[str, Any]:
    """``ragdistill generator teach``: the stage's teach, then the queue when ``data.extra`` is set."""
    return teach_with_queue(cfg, STAGE, base_teach, fold_queue, "filter_report.json")


def next_round(cfg: Any) -> Any:
    """``ragdistill generator next-round``: keep the merged student and its evaluate results."""
    return snapshot_round(cfg, STAGE, stage_dir(cfg, STAGE, "train") / "merged")


def compare_rounds(cfg: Any) -> dict[str, Any]:
    """``ragdistill generator compare-rounds``: every kept round's student next to the current one."""
    return _compare(cfg, STAGE)
