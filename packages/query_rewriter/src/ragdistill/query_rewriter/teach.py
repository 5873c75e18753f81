"""teach: the teacher rewrites CANARD follow-ups and expands standalone queries; outputs come through
the label cache (resumable; the shipped labels make it a cache read), are filtered with counts
reported, and written as training targets.

Writes ``<work_dir>/query_rewriter/teach/``: ``train.jsonl`` (one kept example per line: id, task,
source, question, history, reference, target, what ``train`` reads) and ``rejected.jsonl`` (each
rejected output and why); the counts go into the teach result (``teach.json``).
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import stage_dir
from ragdistill.common.results import TeachResult
from ragdistill.query_rewriter.examples import expansion_train_examples, queued_example, rewrite_train_examples
from ragdistill.query_rewriter.filters import FilterConfig, check_expansion, check_rewrite, filter_outputs
from ragdistill.query_rewriter.labels import cached_teacher, label_teacher_id, teacher_outputs
from ragdistill.query_rewriter.prompts import Example

STAGE = "query_rewriter"

log = get_logger(__name__)


def filter_config(cfg: Any) -> FilterConfig:
    t = cfg.query_rewriter.teach
    return FilterConfig(int(t.min_expansions), int(t.max_expansions), int(t.max_words), float(t.max_ratio))


def training_examples(cfg: Any) -> list[Example]:
    """What the teacher labels: the rewrite records, then the expansion queries (``teach.tasks``)."""
    tasks = {str(t) for t in cfg.query_rewriter.teach.tasks}
    exs: list[Example] = []
    if "rewrite" in tasks:
        exs += rewrite_train_examples(cfg)
    if "expansion" in tasks:
        exs += expansion_train_examples(cfg)
    return exs


def _row(ex: Example, target: str) -> dict[str, Any]:
    return {"id": ex.id, "task": ex.task, "source": ex.source, "question": ex.question, "history": list(ex.history),
            "reference": ex.reference, "target": target}


def teach(cfg: Any) -> TeachResult:
    out_dir = stage_dir(cfg, STAGE, "teach")
    examples = training_examples(cfg)
    result = TeachResult(STAGE, n_items=len(examples))
    with cached_teacher(cfg) as teacher:
        outputs, runs = teacher_outputs(cfg, teacher, examples, desc="teacher")
    for run in runs.values():
        result.count_labels(run)
    fcfg = filter_config(cfg)
    kept, report = filter_outputs(examples, outputs, fcfg)
    rows = [_row(ex, target) for ex, target in kept]
    kept_ids = {(ex.task, ex.id) for ex, _ in kept}
    rejected = []
    for ex, out in zip(examples, outputs, strict=True):
        if out is not None and (ex.task, ex.id) not in kept_ids:
            reason = (check_rewrite(ex, out, fcfg) if ex.task == "rewrite" else check_expansion(ex, out, fcfg))[0]
            rejected.append({"id": ex.id, "task": ex.task, "source": ex.source, "output": out, "reason": reason})
    write_jsonl(out_dir / "train.jsonl", rows)
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    labels = {task: {"launcher": r.launcher, "cached": r.cached, "labelled": r.labelled} for task, r in runs.items()}
    result.kept = len(rows)
    result.details = {"teacher": label_teacher_id(cfg.teacher), "filters": report.as_dict(), "teacher_labels": labels}
    for task, c in result.details["filters"].items():
        log.info(f"{task}: {c['kept']}/{c['total']} kept; rejected empty={c['empty']} "
              f"malformed={c['malformed']} echoed={c['echoed']} too_long={c['too_long']}; unchanged={c['unchanged']}; "
              f"teacher labels: {labels.get(task, {}).get('cached', 0)} cached, {labels.get(task, {}).get('labelled', 0)} labelled")
    if not rows:
        raise RagdistillError(f"the teacher produced no usable targets ({out_dir / 'rejected.jsonl'} lists why); check teacher= and the prompts")
    return result


def add_queued_targets(cfg: Any, items: list[tuple[Any, Any, str]], teacher_id: str) -> dict[str, Any]:
    """``teach data.extra=queue``: queued (source, teacher output, template) items, labelled through
    the cache, as training targets. Each is rebuilt into its example (``examples.queued_example``),
    one already in ``teach/train.jsonl`` (same task and source) is skipped, the rest pass teach's
    filters and the kept ones are appended (``from_queue``). Returns the counts."""
    from ragdistill.common.cache import label_key

    out = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
    if not out.is_file():
        raise RagdistillError(f"{out}: no teach output to add the queue to; run `ragdistill query_rewriter teach` first")
    rows = read_jsonl(out)
    have = {(r["task"], r["source"]) for r in rows}
    pairs = [(queued_example(src, template, f"queue:{label_key(teacher_id, template, src)[:16]}"), label)
             for src, label, template in items]
    examples = [(e, y) for e, y in pairs if e is not None]
    new = [(e, y) for e, y in examples if (e.task, e.source) not in have]
    kept, report = filter_outputs([e for e, _ in new], [y for _, y in new], filter_config(cfg))
    rows += [{**_row(ex, target), "from_queue": True} for ex, target in kept]  # a queued source carries no history
    write_jsonl(out, rows)
    info = {"not_a_task": len(items) - len(examples), "already_taught": len(examples) - len(new), "kept": len(kept),
            "filters": report.as_dict()}
    log.info(f"data.extra: {len(items)} queued records, {len(kept)} new targets kept "
          f"({info['already_taught']} already taught) -> {out}")
    return info
