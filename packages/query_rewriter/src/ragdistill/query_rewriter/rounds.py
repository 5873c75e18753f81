"""query_rewriter rounds: ``teach data.extra=queue`` folds the failure queue into the training set;
``next-round`` keeps this round's student, ``compare-rounds`` puts the rounds side by side.

A queued record's input is a teach payload: the source text (conversation or query) under the
template ``<prompt id>:<task>:max=<n>``. Folding rebuilds the example from it (the follow-up question
is the conversation's last line), gets the teacher's output through the label cache (seeded from
the queue: no teacher call when the teacher is the same), passes it through teach's filters and
appends the kept targets to ``teach/train.jsonl``.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.config import stage_dir
from ragdistill.common.ops.failure_queue import QueueRecord, extra_inputs
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.ops.rounds import compare_rounds as _compare
from ragdistill.common.ops.rounds import snapshot_round, teach_with_queue
from ragdistill.query_rewriter.prompts import TASKS, Example
from ragdistill.query_rewriter.teach import teach as base_teach

STAGE = "query_rewriter"
FOLLOW_UP = "Follow-up question:"


def queued_example(rec: QueueRecord) -> Example | None:
    """The example a queued teach payload stands for (None when its template names no task)."""
    task = next((t for t in TASKS if f":{t}:" in rec.template), None)
    if task is None or not isinstance(rec.input, str):
        return None
    question = rec.input
    if task == "rewrite":
        last = rec.input.rstrip().splitlines()[-1]
        question = last[len(FOLLOW_UP):].strip() if last.startswith(FOLLOW_UP) else last
    return Example(f"queue:{rec.key[:16]}", task, rec.input, question)


def fold_queue(cfg: Any) -> dict[str, Any] | None:
    """Append the queue's examples, labelled through the cache and filtered like teach's, to ``teach/train.jsonl``."""
    from ragdistill.common.errors import RagdistillError
    from ragdistill.query_rewriter.filters import filter_outputs
    from ragdistill.query_rewriter.teach import filter_config, open_cache, teacher_label_runs

    if not cfg.data.get("extra"):
        return None
    cache = open_cache(cfg)
    try:
        records = extra_inputs(cfg, STAGE, cache)
        if not records:
            return None
        out = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
        rows = read_jsonl(out)
        have = {(r["task"], r["source"]) for r in rows}
        examples = [e for e in map(queued_example, records) if e is not None]
        new = [e for e in examples if (e.task, e.source) not in have]
        outputs, runs = teacher_label_runs(cfg, new, cache, desc="teacher (queue)")
    finally:
        cache.close()
    if any(o is None for o in outputs):
        raise RagdistillError("data.extra=queue: some queued inputs belong to another shard; fold the queue without run.shard")
    kept, report = filter_outputs(new, outputs, filter_config(cfg))
    rows += [{"id": ex.id, "task": ex.task, "source": ex.source, "question": ex.question, "history": [], "reference": None,
              "target": target, "from_queue": True} for ex, target in kept]
    write_jsonl(out, rows)
    info = {"records": len(records), "not_a_task": len(records) - len(examples), "already_taught": len(examples) - len(new),
            "kept": len(kept), "filters": report.as_dict(),
            "teacher_labels": {t: {"cached": r.cached, "labelled": r.labelled} for t, r in runs.items()}}
    print(f"[query_rewriter teach] data.extra: {len(records)} queued records, {len(kept)} new targets kept "
          f"({info['already_taught']} already taught); teacher calls for them: {sum(r.labelled for r in runs.values())} -> {out}", flush=True)
    return info


def teach(cfg: Any) -> dict[str, Any]:
    """``ragdistill query_rewriter teach``: the stage's teach, then the queue when ``data.extra`` is set."""
    return teach_with_queue(cfg, STAGE, base_teach, fold_queue, "stats.json")


def next_round(cfg: Any) -> Any:
    """``ragdistill query_rewriter next-round``: keep the trained student and its evaluate results."""
    return snapshot_round(cfg, STAGE, stage_dir(cfg, STAGE, "train") / "model")


def compare_rounds(cfg: Any) -> dict[str, Any]:
    """``ragdistill query_rewriter compare-rounds``: every kept round's student next to the current one."""
    return _compare(cfg, STAGE)
