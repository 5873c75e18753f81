"""First-stage candidates: what the reranker reorders.

A reranker never sees the whole corpus, only the top-k of a first-stage retriever, so teacher,
students and the evaluation must all rerank the *same* candidate lists. They come from BM25
(``bm25s``; no model, fast on CPU), from a user's JSONL file (``{"query_id", "doc_ids"}`` per
line), validated against the corpus and the qrels, or from a bi-encoder's exact cosine top-k over
the corpus: the lists the e2e pipeline hands its reranker (its first stage is the embedder stage's
student, :func:`embedder_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.bm25 import BM25Index
from ragdistill.common.data import RetrievalData
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.reranker.config import CandidateSource

log = get_logger(__name__)


@dataclass
class CandidateList:
    """One query's first-stage candidates, best first, with the first-stage scores."""

    query_id: str
    doc_ids: list[str]
    scores: list[float]


def bm25_candidates(index: BM25Index, queries: dict[str, str], k: int) -> dict[str, CandidateList]:
    """BM25 top-``k`` per query as candidate lists (zero-score tail kept: every list has ``k``)."""
    qids = list(queries)
    hits = index.retrieve([queries[q] for q in qids], k)
    return {q: CandidateList(q, [d for d, _ in h], [s for _, s in h]) for q, h in zip(qids, hits, strict=True)}


def read_candidates_file(path: str | Path, data: RetrievalData, split: str, require_positive: bool) -> dict[str, CandidateList]:
    """Candidates from JSONL lines ``{"query_id": str, "doc_ids": [str, ...], "scores": [float, ...]?}``.

    Every id must exist in the dataset; lines of queries judged only in another split are
    skipped. With ``require_positive`` (training), a query with no judged positive is an error:
    a list without one teaches nothing about what should rank first.
    """
    path = Path(path)
    split_qrels = data.qrels.get(split, {})
    judged_elsewhere = {q for s, qr in data.qrels.items() if s != split for q in qr}
    if not path.is_file():
        raise RagdistillError(f"reranker.candidates.file={path}: no such file; pass a JSONL file of {{query_id, doc_ids}} lines")
    out: dict[str, CandidateList] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict) or "query_id" not in obj or not isinstance(obj.get("doc_ids"), list):
            raise RagdistillError(f"{where}: each line needs \"query_id\" and a \"doc_ids\" list")
        qid = str(obj["query_id"])
        if qid not in data.queries:
            raise RagdistillError(f"{where}: query id {qid!r} is not in the dataset's queries; fix the id or drop the line")
        doc_ids = [str(d) for d in obj["doc_ids"]]
        unknown = [d for d in doc_ids if d not in data.corpus]
        if unknown:
            raise RagdistillError(
                f"{where}: query {qid!r} names {len(unknown)} document id(s) not in the corpus "
                f"(first: {unknown[0]!r}); candidates must come from the same corpus (data.name/data.path)"
            )
        if not doc_ids:
            raise RagdistillError(f"{where}: query {qid!r} has an empty \"doc_ids\" list")
        if qid not in split_qrels:
            if qid in judged_elsewhere or not require_positive:
                continue
            raise RagdistillError(
                f"{where}: query {qid!r} has no positive document in the qrels; add a judgment "
                f"(qrels/{split}.tsv, score > 0) or drop the line"
            )
        scores = obj.get("scores") or [float(-i) for i in range(len(doc_ids))]
        if len(scores) != len(doc_ids):
            raise RagdistillError(f"{where}: \"scores\" has {len(scores)} values for {len(doc_ids)} doc_ids")
        out[qid] = CandidateList(qid, doc_ids, [float(x) for x in scores])
    if not out:
        raise RagdistillError(f"{path}: no candidate line names a query of the {split!r} split")
    return out


def embedder_model(cfg: Any) -> tuple[str, str]:
    """The bi-encoder of the ``embedder`` candidate source and what it is: ``reranker.candidates.embedder_model``
    when set; else the embedder stage's distilled student in this work dir (``<work>/embedder/train/student``,
    the e2e pipeline's first stage) when train has written it; else the undistilled packaged MiniLM."""
    from ragdistill.common.models import resolve_model
    from ragdistill.common.paths import student_dir

    named = cfg.reranker.candidates.embedder_model
    if named:
        return resolve_model(str(named)), f"reranker.candidates.embedder_model={named}"
    trained = student_dir(cfg, "embedder")
    if (trained / "config.json").is_file():
        return str(trained), "the embedder stage's distilled student (embedder/train/student)"
    return resolve_model("minilm-l6"), "the undistilled all-MiniLM-L6-v2 (no embedder/train/student in paths.work_dir)"


def biencoder_candidates(model: str, data: RetrievalData, queries: dict[str, str], k: int, max_length: int = 256,
                         batch_size: int = 64) -> dict[str, CandidateList]:
    """Top-``k`` per query by the cosine of a sentence-transformers bi-encoder over the whole corpus
    (exact search, as the e2e harness's faiss inner-product index does)."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device="cpu")
    st.max_seq_length = max_length
    ids = list(data.corpus)
    log.info("bi-encoder first stage: %s over %d documents, top-%d for %d queries", model, len(ids), k, len(queries))
    docs = st.encode([data.corpus[d].full_text for d in ids], batch_size=batch_size, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=True)
    qids = list(queries)
    qv = st.encode([queries[q] for q in qids], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    sims = qv @ docs.T
    out = {}
    for q, row in zip(qids, sims, strict=True):
        top = np.argsort(-row, kind="stable")[:k]
        out[q] = CandidateList(q, [ids[j] for j in top], [float(row[j]) for j in top])
    return out


def first_stage(data: RetrievalData, split: str, k: int, file: str | None = None, require_positive: bool = False) -> dict[str, CandidateList]:
    """Candidates for the judged queries of ``split``: from ``file`` when given, else BM25 top-``k``."""
    queries, _ = data.split(split)
    if file:
        cands = read_candidates_file(file, data, split, require_positive)
        return {q: CandidateList(q, c.doc_ids[:k], c.scores[:k]) for q, c in cands.items()}
    log.info("BM25 first stage: %d %s queries over %d documents, top-%d", len(queries), split, len(data.corpus), k)
    return bm25_candidates(BM25Index(data.corpus), queries, k)


def candidate_sources(cfg: Any, data: Any, split: str) -> dict[str, tuple[dict[str, CandidateList], str, dict[str, Any]]]:
    """Each source's held-out lists, keyed by its row suffix ("" for the first), with the name of
    its first stage and what it is."""
    rc, k = cfg.reranker, int(cfg.reranker.candidates.eval_k)
    queries, qrels = data.split(split)
    out = {}
    for i, src in enumerate(rc.evaluate.candidate_sources):
        src = CandidateSource(getattr(src, "value", src))
        suffix = "" if i == 0 else f"@{src.value}"
        if src == CandidateSource.first_stage:
            cands = first_stage(data, split, k, rc.candidates.file)
            kind, info = ("file", {"file": rc.candidates.file}) if rc.candidates.file else ("bm25", {"model": "bm25s"})
        else:
            model, what = embedder_model(cfg)
            cands = biencoder_candidates(model, data, queries, k, int(rc.candidates.embedder_max_length), int(rc.evaluate.batch_size))
            kind, info = "embedder", {"model": model, "is": what}
        cands = {q: c for q, c in cands.items() if q in qrels}
        if not cands:
            raise RagdistillError(f"no {src.value} candidates for the {split!r} split of {(cfg.data.path or cfg.data.name)!r}")
        recall = float(np.mean([any(d in qrels[q] for d in c.doc_ids) for q, c in cands.items()]))
        out[suffix] = (cands, kind, {**info, "source": src.value, "suffix": suffix, "first_stage_row": f"ref_first_stage_{kind}",
                                     "queries": len(cands), "k": k, f"recall@{k}": recall})
    return out
