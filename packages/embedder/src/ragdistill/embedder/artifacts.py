"""What ``teach`` leaves for ``train``, read back with the checks that name the verb to rerun.

``<work_dir>/embedder/teach/``:

- ``teacher_embeddings.npz``: doc and query ids and the teacher's vectors of them;
- ``triples.jsonl``: (query, positive, teacher-mined negative) with both teacher scores;
- ``mse_texts.jsonl``: texts with no judged positive, each with its teacher embedding (failure-queue
  queries folded in by ``teach data.extra=queue``): extra rows for the MSE (feature distillation)
  part of ``train``;
- ``teach.json``: the teach result (its ``details`` hold the teacher id and dimension).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.data import Triple
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import iter_jsonl, read_json, write_jsonl
from ragdistill.common.paths import stage_dir
from ragdistill.embedder.models import STAGE, require_artifact

EMBEDDINGS, TRIPLES, MSE_TEXTS, RESULT = "teacher_embeddings.npz", "triples.jsonl", "mse_texts.jsonl", "teach.json"


def teach_dir(cfg: Any) -> Path:
    return stage_dir(cfg, STAGE, "teach")


class TeachArtifacts:
    """What ``teach`` wrote, read back for ``train``."""

    def __init__(self, cfg: Any) -> None:
        d = teach_dir(cfg)
        self.dir = d
        for name in (EMBEDDINGS, TRIPLES, RESULT):
            require_artifact(d / name, "teach", f"teach artifact {name}")
        self.manifest: dict[str, Any] = read_json(d / RESULT).get("details", {})
        with np.load(d / EMBEDDINGS, allow_pickle=False) as z:
            self.doc_ids = [str(x) for x in z["doc_ids"]]
            self.query_ids = [str(x) for x in z["query_ids"]]
            self.doc_emb, self.query_emb = z["doc_emb"], z["query_emb"]
        self.triples = read_triples(cfg)
        self._doc_row = {x: i for i, x in enumerate(self.doc_ids)}
        self._q_row = {x: i for i, x in enumerate(self.query_ids)}

    @property
    def dim(self) -> int:
        return int(self.doc_emb.shape[1])

    def doc(self, doc_id: str) -> np.ndarray:
        return self.doc_emb[self._doc_row[doc_id]]

    def query(self, query_id: str) -> np.ndarray:
        return self.query_emb[self._q_row[query_id]]


def read_triples(cfg: Any) -> list[Triple]:
    """teach's (query, positive, negative) rows; a malformed line names the file and line."""
    path = require_artifact(teach_dir(cfg) / TRIPLES, "teach", f"teach artifact {TRIPLES}")
    triples: list[Triple] = []
    for lineno, row in iter_jsonl(path):
        try:
            triples.append(Triple(**row))
        except TypeError as e:
            raise RagdistillError(f"{path}:{lineno}: not a triple ({e}); rerun `ragdistill embedder teach`") from None
    return triples


def read_mse_texts(cfg: Any, dim: int) -> tuple[list[str], np.ndarray]:
    """The folded-in texts and their teacher embeddings (``(0, dim)`` when there are none)."""
    path = teach_dir(cfg) / MSE_TEXTS
    texts: list[str] = []
    rows: list[np.ndarray] = []
    if path.exists():
        for lineno, row in iter_jsonl(path):
            vec = np.asarray(row.get("teacher", []) if isinstance(row, dict) else [], dtype=np.float32)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or vec.shape != (dim,):
                raise RagdistillError(f"{path}:{lineno}: expected {{\"text\", \"teacher\": [{dim} floats]}} (the teacher of "
                                      "teacher_embeddings.npz); rerun `ragdistill embedder teach data.extra=queue`")
            texts.append(row["text"])
            rows.append(vec)
    return texts, np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)


def add_mse_texts(cfg: Any, texts: list[str], vectors: list[np.ndarray], known: set[str]) -> dict[str, int]:
    """Append texts (with their teacher embeddings) to ``mse_texts.jsonl``; a text already there, or in
    ``known`` (the training queries), is skipped. Returns the counts fold_queue reports."""
    path = teach_dir(cfg) / MSE_TEXTS
    have = [(r["text"], r["teacher"]) for _, r in iter_jsonl(path)] if path.exists() else []
    seen = known | {t for t, _ in have}
    new: list[tuple[str, list[float]]] = []
    for text, vec in zip(texts, vectors, strict=True):
        if text in seen:
            continue
        seen.add(text)
        new.append((text, np.asarray(vec, dtype=np.float32).tolist()))
    write_jsonl(path, ({"text": t, "teacher": v} for t, v in have + new))
    return {"mse_texts_added": len(new), "mse_texts_skipped": len(texts) - len(new), "mse_texts": len(have) + len(new)}
