"""Which records each verb reads, chosen deterministically so the splits never overlap.

* teach / train: the first ``teach.rewrite_records`` CANARD records of the train split (dev), less
  the ``teach.rewrite_shots`` records whose human rewrites are the teacher's examples, and the
  first ``teach.expansion_queries`` train queries of each expansion data set;
* optional human targets (``train.human_records``): the train-split records after the taught ones
  that have a human rewrite, never a validation record;
* checkpoint choice: the last ``train.val_records`` answerable records of the train split, scored
  against the train split's derived answer corpus (never taught; checked);
* evaluate (and calibrate, the monitor baseline): the first ``evaluate.test_records`` answerable
  records of the held-out test split and the first ``evaluate.expansion_queries`` test queries of
  each expansion data set;
* the pipeline's ``(history, question)`` and a failure queue's teach payloads become examples the
  same way (:func:`pipeline_example`, :func:`queued_example`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ragdistill.common.data import (
    RetrievalData,
    RewriteRecord,
    derive_answer_corpus,
    load_retrieval,
    load_rewrites,
    missing_split,
)
from ragdistill.common.errors import RagdistillError
from ragdistill.query_rewriter.prompts import (
    FOLLOW_UP,
    TASKS,
    Example,
    TeacherPrompt,
    expansion_example,
    human_shots,
    rewrite_example,
    shot_records,
)


@dataclass
class RewriteEvalSet:
    """Answerable conversation records, their examples and the corpus they are judged on."""

    data: RetrievalData
    split: str
    records: list[RewriteRecord]
    examples: list[Example]


@lru_cache(maxsize=4)
def _rewrites(source: str) -> dict[str, list[RewriteRecord]]:
    return load_rewrites(source)


def _split(cfg: Any, split: str) -> list[RewriteRecord]:
    splits = _rewrites(cfg.data.path or cfg.data.name)
    if split not in splits:
        raise RagdistillError(missing_split(str(cfg.data.path or cfg.data.name), split, sorted(splits)))
    return splits[split]


def _ex_kwargs(cfg: Any) -> dict[str, int]:
    t = cfg.query_rewriter.teach
    return {"max_turns": int(t.max_turns), "max_answer_chars": int(t.max_answer_chars)}


def _shot_source(cfg: Any) -> tuple[str, bool]:
    """(where the teacher's example rewrites come from, whether that is the run's own data)."""
    data = str(cfg.data.path or cfg.data.name)
    source = str(cfg.query_rewriter.teach.shot_data or data)
    return source, source == data


def _shots(cfg: Any) -> list[RewriteRecord]:
    """The records whose human rewrites are the teacher's examples: from ``teach.shot_data`` (the
    bundled CANARD by default, so the e2e harness, run on SciFact or SQuAD, prompts the teacher as
    ``teach`` did and hits its cached labels), its train split."""
    t = cfg.query_rewriter.teach
    n = int(t.rewrite_shots)
    if n < 0:
        raise RagdistillError(f"query_rewriter.teach.rewrite_shots={n}: must be >= 0 (0 = the hand-written examples)")
    if not n:
        return []
    source, own = _shot_source(cfg)
    split = cfg.data.train_split if own else "train"
    try:
        splits = _rewrites(source)
    except RagdistillError as e:
        raise RagdistillError(f"query_rewriter.teach.shot_data={source!r} (the teacher's example rewrites): {e}; "
                              "set it to canard or a folder with human rewrites, or rewrite_shots=0") from e
    if split not in splits:
        raise RagdistillError(f"query_rewriter.teach.shot_data={source!r} has no split {split!r}; available: {sorted(splits)}")
    return shot_records(splits[split], n)


def _own_shot_ids(cfg: Any) -> set[str]:
    """Ids of the run's own records that are the teacher's examples (never a training target)."""
    return {r.id for r in _shots(cfg)} if _shot_source(cfg)[1] else set()


def teacher_prompt(cfg: Any) -> TeacherPrompt:
    """The teacher's few-shot prompt: ``teach.rewrite_shots`` human rewrites of the train split as
    its rewrite examples (0: the hand-written ones, for data without human rewrites)."""
    kw = _ex_kwargs(cfg)
    shots = _shots(cfg)
    if not shots:
        return TeacherPrompt(**kw)
    return TeacherPrompt(rewrite_shots=human_shots(shots, **kw), **kw)


def rewrite_train_examples(cfg: Any) -> list[Example]:
    """The records the teacher rewrites; the teacher's own examples are left out (it would copy them)."""
    shots = _own_shot_ids(cfg)
    recs = _split(cfg, cfg.data.train_split)[: int(cfg.query_rewriter.teach.rewrite_records)]
    return [rewrite_example(r, **_ex_kwargs(cfg)) for r in recs if r.id not in shots]


def human_train_examples(cfg: Any) -> list[Example]:
    """``train.human_records`` records after the taught ones, each with its human rewrite as the target
    (mixing with human references where the data has them); the validation records are never used."""
    n = int(cfg.query_rewriter.train.human_records)
    if n < 0:
        raise RagdistillError(f"query_rewriter.train.human_records={n}: must be >= 0")
    if not n:
        return []
    recs = _split(cfg, cfg.data.train_split)
    val_ids = {r.id for r in validation_set(cfg).records} if cfg.query_rewriter.train.select_best else set()
    shots = _own_shot_ids(cfg)
    pool = [r for r in recs[int(cfg.query_rewriter.teach.rewrite_records):]
            if r.rewrite and r.id not in val_ids and r.id not in shots]
    if len(pool) < n:
        raise RagdistillError(f"query_rewriter.train.human_records={n}: only {len(pool)} untaught train records with a human "
                              "rewrite are left outside the validation records; lower it")
    return [rewrite_example(r, **_ex_kwargs(cfg)) for r in pool[:n]]


def _eval_set(cfg: Any, split: str, n: int, from_end: bool) -> RewriteEvalSet:
    data, judged = derive_answer_corpus(_split(cfg, split), split, name=cfg.data.name)
    chosen = judged[-n:] if from_end else judged[:n]
    if not chosen:
        raise RagdistillError(f"no answerable records in split {split!r} to evaluate on")
    qrels = {r.id: data.qrels[split][r.id] for r in chosen}
    data = RetrievalData(data.name, data.corpus, {r.id: r.question for r in chosen}, {split: qrels})
    return RewriteEvalSet(data, split, chosen, [rewrite_example(r, **_ex_kwargs(cfg)) for r in chosen])


def validation_set(cfg: Any) -> RewriteEvalSet:
    """Held-out records of the train split for choosing the checkpoint (disjoint from teach's)."""
    n = int(cfg.query_rewriter.train.val_records)
    val = _eval_set(cfg, cfg.data.train_split, n, from_end=True)
    taught = {e.id for e in rewrite_train_examples(cfg)}
    overlap = taught & {r.id for r in val.records}
    if overlap:
        raise RagdistillError(
            f"query_rewriter.train.val_records={n} overlaps the {len(taught)} taught records "
            f"(query_rewriter.teach.rewrite_records); lower one of them ({len(overlap)} shared records)"
        )
    return val


def test_set(cfg: Any) -> RewriteEvalSet:
    return _eval_set(cfg, cfg.data.test_split, int(cfg.query_rewriter.evaluate.test_records), from_end=False)


@lru_cache(maxsize=8)
def _retrieval(name: str) -> RetrievalData:
    return load_retrieval(name)


def expansion_queries(name: str, split: str, n: int) -> tuple[RetrievalData, list[Example]]:
    """The first ``n`` judged queries of one split of a retrieval set, as expansion examples."""
    data = _retrieval(name)
    queries, _ = data.split(split)
    qids = sorted(queries)[:n]
    return data, [expansion_example(f"{name}:{q}", queries[q]) for q in qids]


def expansion_train_examples(cfg: Any) -> list[Example]:
    t = cfg.query_rewriter.teach
    return [ex for name in t.expansion_data for ex in expansion_queries(name, "train", int(t.expansion_queries))[1]]


def pipeline_example(cfg: Any, history: list[str], question: str, rid: str = "e2e") -> Example:
    """The pipeline contract's ``(history, question)`` as the rewrite example teach and evaluate build
    (the same source text, so the same label-cache key)."""
    return rewrite_example(RewriteRecord(rid, list(history or []), question), **_ex_kwargs(cfg))


def queued_example(source: Any, template: str, rid: str) -> Example | None:
    """The example a queued teach payload stands for: its task is named in the template
    (``<prompt id>:<task>:max=<n>``) and a rewrite's question is the source's last line (the follow-up).
    None when the template names no task or the payload is not a source text."""
    task = next((t for t in TASKS if f":{t}:" in template), None)
    if task is None or not isinstance(source, str):
        return None
    question = source
    if task == "rewrite":
        last = source.rstrip().splitlines()[-1]
        question = last[len(FOLLOW_UP):].strip() if last.startswith(FOLLOW_UP) else last
    return Example(rid, task, source, question)
