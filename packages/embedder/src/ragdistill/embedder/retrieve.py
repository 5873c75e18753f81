"""First-stage dense retrieval: embed a corpus, index it with faiss (exact inner product), search.

Used by this stage's mining and evaluation, and by any stage that needs first-stage candidates
(reranker, generator, e2e harness)::

    from ragdistill.embedder.retrieve import DenseIndex, st_encoder
    index = DenseIndex.build(corpus, st_encoder("minilm-l6"))
    run = index.search_texts(queries, top_k=100)        # {query id: {doc id: score}}

Embeddings are L2-normalised, so inner product = cosine. ``dim`` truncates both sides to their
first ``dim`` coordinates and re-normalises (Matryoshka retrieval).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragdistill.common.data import Document
from ragdistill.common.errors import RagdistillError
from ragdistill.common.metrics import Run

EncodeFn = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32 embeddings


def truncate(emb: np.ndarray, dim: int | None) -> np.ndarray:
    """First ``dim`` coordinates, L2-normalised (a Matryoshka view); ``None`` = all of them."""
    emb = np.asarray(emb, dtype=np.float32)
    if dim is not None:
        if dim > emb.shape[1]:
            raise RagdistillError(f"dimension {dim} exceeds the embedding size {emb.shape[1]}")
        emb = emb[:, :dim]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.ascontiguousarray(emb / np.maximum(norms, 1e-12), dtype=np.float32)


def search(doc_emb: np.ndarray, doc_ids: Sequence[str], query_emb: np.ndarray, query_ids: Sequence[str],
           top_k: int = 100, dim: int | None = None) -> Run:
    """Exact top-k by cosine (faiss ``IndexFlatIP``) -> ``{query id: {doc id: score}}``."""
    import faiss

    if len(doc_ids) == 0:
        raise RagdistillError("cannot search an empty corpus; the data has no documents")
    docs, queries = truncate(doc_emb, dim), truncate(query_emb, dim)
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs)
    scores, idx = index.search(queries, min(top_k, len(doc_ids)))
    return {
        q: {doc_ids[j]: float(s) for j, s in zip(row_i, row_s, strict=True) if j >= 0}
        for q, row_i, row_s in zip(query_ids, idx, scores, strict=True)
    }


@dataclass
class DenseIndex:
    """A corpus embedded once, searchable by query embeddings or query texts."""

    doc_ids: list[str]
    doc_emb: np.ndarray
    encode: EncodeFn | None = None

    @classmethod
    def build(cls, corpus: Mapping[str, Document] | Mapping[str, str], encode: EncodeFn) -> DenseIndex:
        if not corpus:
            raise RagdistillError("cannot index an empty corpus; the data has no documents")
        ids = list(corpus)
        texts = [d.full_text if isinstance(d, Document) else str(d) for d in corpus.values()]
        return cls(ids, np.asarray(encode(texts), dtype=np.float32), encode)

    def search(self, query_emb: np.ndarray, query_ids: Sequence[str], top_k: int = 100, dim: int | None = None) -> Run:
        return search(self.doc_emb, self.doc_ids, query_emb, query_ids, top_k, dim)

    def search_texts(self, queries: Mapping[str, str], top_k: int = 100, dim: int | None = None) -> Run:
        if self.encode is None:
            raise RagdistillError("this index has no encoder; pass query embeddings to search() instead")
        ids = list(queries)
        return self.search(self.encode([queries[q] for q in ids]), ids, top_k, dim)


def st_encoder(model: str, batch_size: int = 32, max_length: int | None = None, backend: str = "torch",
               file_name: str | None = None) -> EncodeFn:
    """A normalised sentence-transformers encoder from a packaged name, folder or hub id
    (``backend="onnx"`` + ``file_name`` for an exported, e.g. int8, model)."""
    from ragdistill.embedder.models import load_sentence_transformer

    st = load_sentence_transformer(model, max_length=max_length, backend=backend, file_name=file_name)

    def encode(texts: list[str]) -> np.ndarray:
        return st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=len(texts) > 4 * batch_size).astype(np.float32)

    return encode


def dense_retrieve(corpus: Mapping[str, Document], queries: Mapping[str, str], encode: EncodeFn, top_k: int = 100) -> Run:
    """One call: embed corpus and queries with ``encode``, return the top-k run."""
    return DenseIndex.build(corpus, encode).search_texts(queries, top_k)
