"""First-stage retrieval for the harness: a faiss inner-product index over an encoder's vectors,
built once per (encoder, corpus) and cached on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import faiss
import numpy as np

from ragdistill.common.data import Document
from ragdistill.common.io import atomic_path
from ragdistill.common.logging import get_logger
from ragdistill.common.pipeline import Encoder

log = get_logger(__name__)


class FaissRetriever:
    """Exact inner-product search (vectors are normalised, so cosine) over ``corpus``."""

    def __init__(self, encoder: Encoder, corpus: dict[str, Document], cache_dir: Path, encoder_id: str, batch_size: int = 64) -> None:
        self.encoder, self.doc_ids = encoder, list(corpus)
        key = hashlib.sha256((encoder_id + "\n" + "\n".join(self.doc_ids)).encode()).hexdigest()[:16]
        path = cache_dir / f"{key}.faiss"
        self.built_now = not path.exists()
        if self.built_now:
            texts = [corpus[d].full_text for d in self.doc_ids]
            vecs = np.concatenate([encoder(texts[i : i + batch_size], is_query=False) for i in range(0, len(texts), batch_size)])
            index = faiss.IndexFlatIP(vecs.shape[1])
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            with atomic_path(path) as tmp:
                faiss.write_index(index, str(tmp))
            log.info("built faiss index %s (%d docs, dim %d)", path, len(texts), vecs.shape[1])
        self.index = faiss.read_index(str(path))
        self.index_path = path

    def __call__(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        q = np.ascontiguousarray(self.encoder(queries, is_query=True), dtype=np.float32)
        scores, idx = self.index.search(q, min(k, len(self.doc_ids)))
        return [[(self.doc_ids[j], float(s)) for j, s in zip(row_i, row_s, strict=True) if j >= 0] for row_i, row_s in zip(idx, scores, strict=True)]
