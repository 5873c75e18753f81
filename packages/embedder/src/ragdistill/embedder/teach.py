"""embedder teach: teacher embeddings of the corpus and queries, then teacher-mined hard negatives.

Embeddings go through the shared label cache (content-addressed, committed batch by batch), so a
killed run resumes where it stopped and ``evaluate`` reuses them. Labels shipped with the repo
(``data/labels/embedder*.jsonl``) are imported first, so the bundled demo never waits on the
teacher. Writes to ``<work_dir>/embedder/teach/``: ``teacher_embeddings.npz`` (doc/query ids and
vectors), ``triples.jsonl`` (query, positive, negative + teacher scores), ``teach.json``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.cache import LabelCache, Shard
from ragdistill.common.config import stage_dir
from ragdistill.common.data import RetrievalData, load_retrieval
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, read_json, write_json, write_jsonl
from ragdistill.common.labelling import launch_settings, run_labelling
from ragdistill.common.logging import get_logger
from ragdistill.common.paths import data_dir
from ragdistill.common.teachers import EmbeddingTeacher, build_teacher, require
from ragdistill.embedder.mining import mine_hard_negatives
from ragdistill.embedder.models import STAGE, require_artifact

log = get_logger(__name__)

TEMPLATE = "embed|prompt="  # cache-key template of a plain (prompt-free) text embedding
ARTIFACTS = ("teacher_embeddings.npz", "triples.jsonl", "teach.json")


def data_source(cfg: Any) -> str:
    """``data.path`` when set, else the bundled ``data.name``."""
    return str(cfg.data.path or cfg.data.name)


def load_data(cfg: Any) -> RetrievalData:
    """The configured retrieval data (slice applied), checked for what this stage needs."""
    data = load_retrieval(data_source(cfg), cfg.data.max_queries, cfg.data.max_docs)
    if not data.corpus:
        raise RagdistillError(f"data {data_source(cfg)!r}: the corpus is empty; the embedder needs documents to index")
    for split in (cfg.data.train_split, cfg.data.test_split):
        queries, _ = data.split(split)
        if not queries:
            raise RagdistillError(f"data {data_source(cfg)!r}: split {split!r} has no judged queries (data.{split}_split)")
    return data


def open_cache(cfg: Any, sharded: bool = True) -> LabelCache:
    """The shared label cache (``run.shard`` applied when ``sharded``), with the repo's shipped
    embedder labels merged in."""
    cache = LabelCache(cfg.paths.label_cache, shard=Shard.parse(cfg.run.shard) if sharded else None)
    for f in sorted((data_dir() / "labels").glob(f"{STAGE}*.jsonl")):
        added = cache.import_jsonl(f)
        if added:
            log.info("imported %d shipped teacher labels from %s", added, f)
    return cache


def teacher_embed(cache: LabelCache, teacher: EmbeddingTeacher | None, texts: list[str], batch_size: int, desc: str,
                  cfg: Any = None) -> tuple[np.ndarray | None, str]:
    """Teacher embeddings of ``texts`` through the cache (``None`` when a shard left some
    unlabelled) and the id of the teacher that made them.

    ``cfg.run.launcher`` decides where the teacher runs (``local``, ``shards``, ``ray``: see
    ``ragdistill.common.labelling``); ``teacher`` is the one built here (None with ``ray``)."""
    run = run_labelling(cache, cfg.teacher if cfg is not None else None, "embed", texts, cfg, template=TEMPLATE,
                        batch_size=batch_size, desc=desc, teacher=teacher)
    if any(v is None for v in run.labels):
        return None, run.teacher_id
    return np.stack([np.asarray(v, dtype=np.float32) for v in run.labels]), run.teacher_id


def teach(cfg: Any) -> dict[str, Any]:
    s = cfg.embedder
    data = load_data(cfg)
    train_q, train_qrels = data.split(cfg.data.train_split)
    test_q, _ = data.split(cfg.data.test_split)
    on_ray = launch_settings(cfg).launcher == "ray"  # Ray workers build the teacher themselves
    teacher = None if on_ray else require(build_teacher(cfg.teacher), EmbeddingTeacher, "embedder teach")
    cache = open_cache(cfg)
    doc_ids = list(data.corpus)
    query_ids = list(dict.fromkeys([*train_q, *test_q]))
    bs = int(cfg.teacher.batch_size)
    query_emb, teacher_id = teacher_embed(cache, teacher, [data.queries[q] for q in query_ids], bs, "teacher: queries", cfg)
    doc_emb, _ = teacher_embed(cache, teacher, [data.corpus[d].full_text for d in doc_ids], bs, "teacher: corpus", cfg)
    if query_emb is None or doc_emb is None:
        log.info("shard %s labelled into %s; merge the shard caches and rerun teach without run.shard", cfg.run.shard, cache.path)
        return {"shard": cfg.run.shard, "cache": str(cache.path)}

    q_row = {q: i for i, q in enumerate(query_ids)}
    triples = mine_hard_negatives(
        list(train_q), query_emb[[q_row[q] for q in train_q]], doc_ids, doc_emb, train_qrels, depth=s.mining_depth, negatives_per_query=s.negatives_per_query,
        margin=s.mining_margin, skip_top=s.mining_skip_top,
    )
    if not triples:
        raise RagdistillError(
            f"no training triples mined from {data_source(cfg)!r} split {cfg.data.train_split!r}: every candidate scored within "
            f"embedder.mining_margin={s.mining_margin} of its positive or the corpus is too small; lower the margin or add documents"
        )
    out = stage_dir(cfg, STAGE, "teach")
    with atomic_path(out / "teacher_embeddings.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, doc_ids=np.array(doc_ids), doc_emb=doc_emb, query_ids=np.array(query_ids), query_emb=query_emb)
    write_jsonl(out / "triples.jsonl", (asdict(t) for t in triples))
    manifest = {
        "teacher_id": teacher_id, "teacher_dim": int(doc_emb.shape[1]), "data": data_source(cfg),
        "max_queries": cfg.data.max_queries, "max_docs": cfg.data.max_docs, "train_split": cfg.data.train_split,
        "n_docs": len(doc_ids), "n_queries": len(query_ids), "n_train_queries": len(train_q), "n_triples": len(triples),
        "mining": {"depth": s.mining_depth, "negatives_per_query": s.negatives_per_query, "margin": s.mining_margin,
                   "skip_top": s.mining_skip_top},
    }
    write_json(out / "teach.json", manifest)
    log.info("teach: %d docs, %d queries embedded by %s; %d triples -> %s", len(doc_ids), len(query_ids), teacher_id, len(triples), out)
    return manifest


class TeachArtifacts:
    """What ``teach`` wrote, read back for ``train``/``evaluate``."""

    def __init__(self, cfg: Any) -> None:
        d = stage_dir(cfg, STAGE, "teach")
        self.dir = d
        for name in ARTIFACTS:
            require_artifact(d / name, "teach", f"teach artifact {name}")
        self.manifest = read_json(d / "teach.json")
        with np.load(d / "teacher_embeddings.npz", allow_pickle=False) as z:
            self.doc_ids = [str(x) for x in z["doc_ids"]]
            self.query_ids = [str(x) for x in z["query_ids"]]
            self.doc_emb, self.query_emb = z["doc_emb"], z["query_emb"]
        from ragdistill.common.data import Triple
        from ragdistill.common.io import iter_jsonl

        self.triples = []
        path = d / "triples.jsonl"
        for lineno, row in iter_jsonl(path):
            try:
                self.triples.append(Triple(**row))
            except TypeError as e:
                raise RagdistillError(f"{path}:{lineno}: not a triple ({e}); rerun `ragdistill embedder teach`") from None
        self._doc_row = {x: i for i, x in enumerate(self.doc_ids)}
        self._q_row = {x: i for i, x in enumerate(self.query_ids)}

    @property
    def dim(self) -> int:
        return int(self.doc_emb.shape[1])

    def doc(self, doc_id: str) -> np.ndarray:
        return self.doc_emb[self._doc_row[doc_id]]

    def query(self, query_id: str) -> np.ndarray:
        return self.query_emb[self._q_row[query_id]]


def teach_dir(cfg: Any) -> Path:
    return stage_dir(cfg, STAGE, "teach")
