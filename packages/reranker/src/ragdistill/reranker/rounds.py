"""reranker rounds: ``teach data.extra=queue`` folds the failure queue into the training lists;
``next-round`` keeps this round's student, ``compare-rounds`` puts the rounds side by side.

A queued record's input is a teach payload: one ``[query, document text]`` pair under
``rerank-pair:v1`` (a routed or disagreeing list is queued pair by pair). Folding groups the pairs
by query, gets each pair's teacher score through the label cache (seeded from the queue: no teacher
call when the teacher is the same), orders each list by the teacher (its best first, where teach
puts the judged positive: a queued list has no judgement) and appends the lists whose documents are
in the stage's corpus to ``teach/train.jsonl``, which ``train`` reads.
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.cache import label_key
from ragdistill.common.config import stage_dir
from ragdistill.common.ops.failure_queue import extra_inputs
from ragdistill.common.io import read_jsonl, write_jsonl
from ragdistill.common.ops.rounds import compare_rounds as _compare
from ragdistill.common.ops.rounds import snapshot_round, teach_with_queue
from ragdistill.reranker.lists import PAIR_TEMPLATE, import_shipped_labels, load_data, open_cache
from ragdistill.reranker.teach import teach as base_teach

STAGE = "reranker"


def fold_queue(cfg: Any) -> dict[str, Any] | None:
    """Append the queue's lists, scored through the cache and ordered by the teacher, to ``teach/train.jsonl``."""
    from ragdistill.reranker.teachers import make_teacher

    if not cfg.data.get("extra"):
        return None
    teacher = make_teacher(cfg)
    cache = open_cache(cfg)
    try:
        records = extra_inputs(cfg, STAGE, cache)
        if not records:
            return None
        import_shipped_labels(cfg, cache)
        pairs = [r.input for r in records if r.template == PAIR_TEMPLATE and isinstance(r.input, list) and len(r.input) == 2]
        out = stage_dir(cfg, STAGE, "teach") / "train.jsonl"
        rows = read_jsonl(out)
        taught = {r["query"] for r in rows}
        by_query: dict[str, list[str]] = {}
        for q, d in pairs:
            if q not in taught and d not in by_query.setdefault(q, []):
                by_query[q].append(d)
        flat = [[q, d] for q, docs in by_query.items() for d in docs]
        missing = len(flat) - len(cache.get_many([label_key(teacher.teacher_id, PAIR_TEMPLATE, p) for p in flat]))
        labels = cache.label(flat, lambda batch: teacher.score([(q, d) for q, d in batch]), teacher.teacher_id, PAIR_TEMPLATE,
                             batch_size=int(cfg.teacher.batch_size), desc="reranker teacher scores (queue)")
    finally:
        cache.close()
    data = load_data(cfg)
    doc_id = {doc.full_text: i for i, doc in data.corpus.items()}
    score = {(q, d): float(s) for (q, d), s in zip(flat, labels, strict=True)}
    new, outside = [], 0
    for n, (q, docs) in enumerate(by_query.items()):
        docs = [d for d in docs if d in doc_id]
        outside += len(by_query[q]) - len(docs)
        if len(docs) < 2:
            continue
        docs.sort(key=lambda d: -score[(q, d)])
        new.append({"query_id": f"queue:{n}", "query": q, "doc_ids": [doc_id[d] for d in docs],
                    "teacher_scores": [score[(q, d)] for d in docs], "first_stage_scores": [0.0] * len(docs), "from_queue": True})
    write_jsonl(out, rows + new)
    info = {"records": len(records), "queries": len(by_query), "already_taught": len({q for q, _ in pairs} & taught),
            "lists_kept": len(new), "docs_outside_corpus": outside, "teacher_labels": {"cached": len(flat) - missing, "labelled": missing}}
    print(f"[reranker teach] data.extra: {len(records)} queued pairs, {len(new)} new lists kept ({info['already_taught']} queries already "
          f"taught, {outside} documents not in this corpus); teacher calls for them: {missing} -> {out}", flush=True)
    return info


def teach(cfg: Any) -> dict[str, Any]:
    """``ragdistill reranker teach``: the stage's teach, then the queue when ``data.extra`` is set."""
    return teach_with_queue(cfg, STAGE, base_teach, fold_queue, "stats.json")


def next_round(cfg: Any) -> Any:
    """``ragdistill reranker next-round``: keep the cross-encoder student and its evaluate results."""
    return snapshot_round(cfg, STAGE, stage_dir(cfg, STAGE, "train") / "student")


def compare_rounds(cfg: Any) -> dict[str, Any]:
    """``ragdistill reranker compare-rounds``: every kept round's student next to the current one."""
    return _compare(cfg, STAGE)
