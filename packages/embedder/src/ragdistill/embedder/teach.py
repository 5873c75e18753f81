"""embedder teach: teacher embeddings of the corpus and queries, then teacher-mined hard negatives.

Embeddings go through the stage's cached teacher (``EmbedderStage.teacher``: content-addressed,
committed batch by batch), so a killed run resumes where it stopped and ``evaluate`` reuses them.
The files of ``embedder.teach.shipped_labels`` (default ``data/labels/embedder*.jsonl*``) are
imported first, so the bundled demo never waits on the teacher. Writes to
``<work_dir>/embedder/teach/``: ``teacher_embeddings.npz`` (doc/query ids and vectors) and
``triples.jsonl`` (query, positive, negative + teacher scores) and, with ``embedder.teach.mse_extra``,
``mse_texts.jsonl`` (other corpora's texts with their teacher embeddings, for train's MSE part); the teach result (``teach.json``)
holds the counts and, under ``details``, the teacher id and dimension and the mining settings.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, write_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.results import TeachResult
from ragdistill.common.teachers.cached import CachedTeacher
from ragdistill.embedder.artifacts import EMBEDDINGS, MSE_TEXTS, TRIPLES, add_mse_texts, teach_dir
from ragdistill.embedder.data import data_source, extra_mse_corpus, load_data
from ragdistill.embedder.mining import mine_hard_negatives
from ragdistill.embedder.models import STAGE
from ragdistill.embedder.teacher import teacher_vectors

log = get_logger(__name__)


def teach(cfg: Any, teacher: CachedTeacher) -> TeachResult:
    s = cfg.embedder.teach
    data = load_data(cfg)
    train_q, train_qrels = data.split(cfg.data.train_split)
    test_q, _ = data.split(cfg.data.test_split)
    doc_ids = list(data.corpus)
    query_ids = list(dict.fromkeys([*train_q, *test_q]))
    result = TeachResult(STAGE, n_items=len(query_ids) + len(doc_ids))
    with teacher:
        query_emb, run = teacher_vectors(teacher, [data.queries[q] for q in query_ids], "teacher: queries")
        result.count_labels(run)
        doc_emb, doc_run = teacher_vectors(teacher, [data.corpus[d].full_text for d in doc_ids], "teacher: corpus")
        result.count_labels(doc_run)
        extra: list[tuple[str, list[str], np.ndarray | None]] = []
        for source in s.mse_extra:  # unlabelled text for train's MSE part
            texts = extra_mse_corpus(str(source), s.mse_extra_docs, int(cfg.run.seed))
            if not texts:  # mse_extra_docs=0
                continue
            emb, extra_run = teacher_vectors(teacher, texts, f"teacher: {source} corpus (MSE)")
            result.count_labels(extra_run)
            result.n_items += len(texts)
            extra.append((str(source), texts, emb))
        cache_path = teacher.cache.path
    if query_emb is None or doc_emb is None:
        log.info("shard %s labelled into %s; merge the shard caches and rerun teach without run.shard", cfg.run.shard, cache_path)
        result.details = {"shard": cfg.run.shard, "cache": str(cache_path)}
        return result

    q_row = {q: i for i, q in enumerate(query_ids)}
    triples = mine_hard_negatives(
        list(train_q), query_emb[[q_row[q] for q in train_q]], doc_ids, doc_emb, train_qrels, depth=s.mining_depth,
        negatives_per_query=s.negatives_per_query, margin=s.mining_margin, skip_top=s.mining_skip_top,
    )
    if not triples:
        raise RagdistillError(
            f"no training triples mined from {data_source(cfg)!r} split {cfg.data.train_split!r}: every candidate scored within "
            f"embedder.teach.mining_margin={s.mining_margin} of its positive or the corpus is too small; lower the margin or add documents"
        )
    out = teach_dir(cfg)
    with atomic_path(out / EMBEDDINGS) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, doc_ids=np.array(doc_ids), doc_emb=doc_emb, query_ids=np.array(query_ids), query_emb=query_emb)
    write_jsonl(out / TRIPLES, (asdict(t) for t in triples))
    (out / MSE_TEXTS).unlink(missing_ok=True)  # fresh training data: a queue is folded in again by data.extra
    train_texts = {data.queries[q] for q in train_q}
    mse_extra = {source: add_mse_texts(cfg, texts, list(emb), train_texts)["mse_texts_added"]
                 for source, texts, emb in extra if emb is not None}
    result.kept = len(triples)
    result.details = {
        "teacher_id": run.teacher_id, "teacher_dim": int(doc_emb.shape[1]), "data": data_source(cfg),
        "max_queries": cfg.data.max_queries, "max_docs": cfg.data.max_docs, "train_split": cfg.data.train_split,
        "n_docs": len(doc_ids), "n_queries": len(query_ids), "n_train_queries": len(train_q), "n_triples": len(triples),
        "mining": {"depth": s.mining_depth, "negatives_per_query": s.negatives_per_query, "margin": s.mining_margin,
                   "skip_top": s.mining_skip_top},
        "mse_extra": mse_extra,  # texts added to mse_texts.jsonl per extra source
    }
    log.info("teach: %d docs, %d queries embedded by %s (%d labels cached, %d made); %d triples -> %s", len(doc_ids), len(query_ids),
             run.teacher_id, result.cached, result.teacher_calls, len(triples), out)
    return result
