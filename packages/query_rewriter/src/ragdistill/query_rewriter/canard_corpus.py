"""A retrieval corpus derived from CANARD, so a rewrite can be measured by what it retrieves.

CANARD ships no passages, but each record's ``History`` ends with the answer to the previous
question of the same dialog. Two consecutive records belong to one dialog when the later history
is the earlier one plus (the earlier question, its answer): ``h[j] == h[i] + [q_i, a_i]``. That
rule needs no dialog id, so it works on the test split, which has none (see /work/shared/DATA.md).

The answer spans (taken from the Wikipedia section being discussed) are the corpus; each question's
own answer span is its one relevant document. Unanswerable turns (QuAC's ``I don't know.``) and the
last question of each dialog (its answer is never shown) have no relevant document and are left
out of the evaluation. Identical span texts are merged into one document, since no retriever can
tell them apart.
"""

from __future__ import annotations

from dataclasses import replace

from ragdistill.common.data import Document, Qrels, RetrievalData, RewriteRecord
from ragdistill.common.errors import RagdistillError

NO_ANSWER = {"i don't know.", "cannotanswer"}


def answer_spans(records: list[RewriteRecord]) -> dict[int, str]:
    """Index of a record -> the answer to its question, read from the next record of its dialog."""
    spans: dict[int, str] = {}
    for i in range(len(records) - 1):
        h, nxt = records[i].history, records[i + 1].history
        if len(nxt) == len(h) + 2 and nxt[: len(h)] == h and nxt[-2].strip() == records[i].question.strip():
            spans[i] = nxt[-1]
    return spans


def derive_answer_corpus(records: list[RewriteRecord], split: str = "test", name: str = "canard") -> tuple[RetrievalData, list[RewriteRecord]]:
    """(the answer-span corpus with one qrel per answerable question, those records with
    ``gold_doc_ids`` set). Query ids are the record ids."""
    if not records:
        raise RagdistillError(f"{name}/{split}: no CANARD records to derive a corpus from")
    corpus: dict[str, Document] = {}
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    judged: list[RewriteRecord] = []
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise RagdistillError(f"{name}/{split}: record ids are not unique; each CANARD record needs its own id")
    for i, span in answer_spans(records).items():
        text = " ".join(span.split())
        if not text or text.lower() in NO_ANSWER:
            continue
        did = by_text.get(text)
        if did is None:
            did = by_text[text] = f"{records[i].id}:answer"
            corpus[did] = Document(did, text)
        rec = records[i]
        queries[rec.id] = rec.question
        qrels[rec.id] = {did: 1}
        judged.append(replace(rec, gold_doc_ids=[did]))
    if not corpus:
        raise RagdistillError(
            f"{name}/{split}: no answer spans found; consecutive records of one dialog must extend the history "
            "by (previous question, its answer), as CANARD's do"
        )
    return RetrievalData(f"{name}-{split}-answers", corpus, queries, {split: qrels}), judged
