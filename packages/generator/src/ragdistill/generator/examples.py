"""Questions with their contexts: what teacher and student answer from.

Each question gets the BM25 top-k passages of the corpus with its gold paragraph always among
them (replacing the last hit when retrieval missed it), in a seeded order so the gold passage is
not always first. The same function builds train and test examples, so the student is evaluated
on the input distribution it was trained on; the held-out test split shares no article with train.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.data import Document, QARecord, load_qa, load_retrieval, missing_split
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.pipeline import Passage

log = get_logger(__name__)


@dataclass
class QAExample:
    """One question, its reference answers and the passages shown with it."""

    id: str
    question: str
    answers: list[str]
    contexts: list[Document]
    gold_doc_ids: list[str]

    @property
    def context_texts(self) -> list[str]:
        """The contexts as the pipeline contract passes them (text, with the title carried along)."""
        return [Passage(d.text, d.title) for d in self.contexts]


def sample_records(records: list[QARecord], n: int | None, seed: int) -> list[QARecord]:
    """A seeded sample; the sample for a smaller ``n`` is a prefix of the one for a larger ``n``,
    so a short run reuses the labels of a long one."""
    order = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(order)
    return order[:n] if n else order


def load_examples(cfg: Any, split: str, n: int | None) -> list[QAExample]:
    """``n`` questions of ``split`` with their contexts, per ``cfg.generator.retrieval``."""
    source = cfg.data.path or cfg.data.name
    try:
        records = load_qa(source)
    except RagdistillError:
        raise
    except Exception as e:
        raise RagdistillError(
            f"data={source!r}: the generator needs QA data with reference answers (bundled 'squad', a SQuAD-format "
            f"JSON file, a QA JSONL file or a BEIR folder with answers.jsonl via data.path); loading it failed: {type(e).__name__}: {e}"
        ) from e
    if split not in records:
        raise RagdistillError(missing_split(str(source), split, sorted(records)))
    chosen = sample_records(records[split], n, cfg.run.seed)
    data = load_retrieval(source, max_docs=cfg.data.max_docs) if cfg.data.max_docs else load_retrieval(source)
    corpus = data.corpus
    for r in chosen:  # a corpus slice must still hold every gold paragraph
        for d in r.gold_doc_ids:
            if d not in corpus:
                raise RagdistillError(f"gold document {d!r} of question {r.id!r} is missing from the corpus of {source!r}")
    r_cfg = cfg.generator.retrieval
    hits = [[d for d, _ in h] for h in BM25Index(corpus).retrieve([r.question for r in chosen], r_cfg.top_k)]
    out = []
    for r, ids in zip(chosen, hits, strict=True):
        ids = list(ids)
        missing = [g for g in r.gold_doc_ids if g not in ids] if r_cfg.include_gold else []
        if missing:
            ids = ids[: max(0, r_cfg.top_k - len(missing))] + missing
        if r_cfg.shuffle:
            random.Random(f"{cfg.run.seed}:{r.id}").shuffle(ids)
        out.append(QAExample(r.id, r.question, list(r.answers), [corpus[d] for d in ids], list(r.gold_doc_ids)))
    recall = sum(any(g in [d.id for d in e.contexts] for g in e.gold_doc_ids) for e in out) / max(1, len(out))
    log.info("%s: %d questions, %d contexts each, gold in contexts for %.0f%%", split, len(out), r_cfg.top_k, 100 * recall)
    return out
