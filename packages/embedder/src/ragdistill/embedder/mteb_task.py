"""The held-out split as an offline MTEB retrieval task, scored by MTEB's own evaluator.

``LocalRetrievalTask`` wraps local data (no download); ``PrecomputedEncoder`` answers MTEB's
``encode`` calls from embeddings this stage already computed (matched by text; anything else is
encoded on the spot), so MTEB re-uses the evaluation's encodings instead of paying for them twice.
Results are written in MTEB's own JSON format (``TaskResult.to_disk``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragdistill.common.data import Document, Qrels
from ragdistill.common.errors import RagdistillError


def make_task(name: str, corpus: dict[str, Document], queries: dict[str, str], qrels: Qrels, split: str = "test",
              standard: str | None = None) -> Any:
    """A retrieval task over local data (documents as ``full_text``, title folded in), no download.

    ``standard`` names MTEB's own task for this data (``SciFact`` for the bundled SciFact). Only the
    full official split may carry its name: when the local split has exactly the documents and queries
    MTEB's own statistics count, its definition (name, revision, main score) is kept, the result file
    is MTEB's ``SciFact.json`` and comparable with the leaderboard. Anything else (a slice, other
    data) is a custom task named for what it is (``<name>-slice-<n>q-<n>d``, "a slice of SciFact" in
    its description), so its score is never filed under the official task. Without ``standard``, a
    custom task called ``name``."""
    from datasets import Dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    if standard:
        task = standard_task(standard, split)
        if not is_official_split(task, split, corpus, queries):
            n_q, n_d = len(queries), len(corpus)
            task = local_task(f"{name}-slice-{n_q}q-{n_d}d", split,
                              f"a slice of MTEB's {standard} split {split!r} ({n_q} queries, {n_d} documents); not comparable with its leaderboard")
    else:
        task = local_task(name, split)
    task.dataset = {"default": {split: RetrievalSplitData(
        corpus=Dataset.from_list([{"id": d, "title": "", "text": doc.full_text} for d, doc in corpus.items()]),
        queries=Dataset.from_list([{"id": q, "text": t} for q, t in queries.items()]),
        relevant_docs={q: dict(rel) for q, rel in qrels.items() if q in queries},
        top_ranked=None,
    )}}
    task.data_loaded = True  # mteb.evaluate skips load_data (the hub download) for a loaded task
    return task


def standard_task(standard: str, split: str) -> Any:
    import mteb

    try:
        task = mteb.get_task(standard)
    except Exception as e:  # mteb raises KeyError/ValueError variants for unknown names
        raise RagdistillError(f"data.mteb_task={standard!r} is not an MTEB task ({e}); use MTEB's task name, e.g. SciFact, or null") from e
    if task.metadata.type != "Retrieval" or split not in task.metadata.eval_splits:
        raise RagdistillError(f"data.mteb_task={standard!r}: MTEB's task is a {task.metadata.type} task evaluated on "
                              f"{task.metadata.eval_splits}, not retrieval on split {split!r}; set data.mteb_task=null")
    return task


def is_official_split(task: Any, split: str, corpus: dict[str, Document], queries: dict[str, str]) -> bool:
    """The local split has the document and query counts of MTEB's own statistics for the task."""
    try:
        stats = (task.metadata.descriptive_stats or {}).get(split) or {}
    except Exception:  # no statistics shipped for the task: cannot show it is the full split
        return False
    return stats.get("num_documents") == len(corpus) and stats.get("num_queries") == len(queries)


def local_task(name: str, split: str, description: str | None = None) -> Any:
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=name, description=description or f"ragdistill held-out retrieval split {split!r} of local data {name!r}",
        dataset={"path": f"local/{name}", "revision": "1"}, reference=None, type="Retrieval", category="t2t",
        modalities=["text"], eval_splits=[split], eval_langs=["eng-Latn"], main_score="ndcg_at_10",
        date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None, dialect=None,
        sample_creation=None, bibtex_citation=None,
    )

    class LocalRetrievalTask(AbsTaskRetrieval):
        pass

    LocalRetrievalTask.metadata = metadata
    return LocalRetrievalTask()


class PrecomputedEncoder:
    """An MTEB encoder serving known embeddings by text (``memo``), computing the rest with ``encode``."""

    def __init__(self, name: str, encode: Callable[[list[str]], np.ndarray], memo: dict[str, np.ndarray], dim: int) -> None:
        from mteb.models.model_meta import ModelMeta

        self._encode, self.memo = encode, {k.strip(): v for k, v in memo.items()}
        self.mteb_model_meta = ModelMeta.create_empty({
            "name": f"ragdistill/{name}", "revision": "local", "embed_dim": dim, "similarity_fn_name": "cosine",
            "framework": ["Sentence Transformers"],
        })
        self.hits = self.misses = 0

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        texts = [t for batch in inputs for t in batch["text"]]
        todo = [t for t in dict.fromkeys(texts) if t.strip() not in self.memo]
        if todo:
            for t, v in zip(todo, self._encode(todo), strict=True):
                self.memo[t.strip()] = v
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        return np.stack([self.memo[t.strip()] for t in texts]).astype(np.float32)

    def similarity(self, a: Any, b: Any) -> Any:
        import torch

        a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
        return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        import torch

        a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
        return (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1)


def run_mteb(task: Any, encoder: PrecomputedEncoder, out_dir: Path) -> dict[str, float]:
    """Run MTEB's retrieval evaluation; write its JSON under ``out_dir``; return the headline scores."""
    import mteb

    result = mteb.evaluate(encoder, task, cache=None, show_progress_bar=False, overwrite_strategy="always")
    task_result = result.task_results[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    task_result.to_disk(out_dir / f"{task.metadata.name}.json")
    write_model_meta(encoder, out_dir)
    scores = task_result.scores[task.metadata.eval_splits[0]][0]
    return {"mteb_ndcg@10": float(scores["ndcg_at_10"]), "mteb_mrr@10": float(scores["mrr_at_10"]),
            "mteb_recall@100": float(scores["recall_at_100"])}


def write_model_meta(encoder: PrecomputedEncoder, out_dir: Path) -> Path:
    """``model_meta.json`` beside the results, as MTEB's result folders keep it: which model scored."""
    from ragdistill.common.io import write_text_atomic

    meta = encoder.mteb_model_meta
    text = meta.model_dump_json(indent=2, warnings=False) if hasattr(meta, "model_dump_json") else json.dumps(meta.to_dict(), indent=2, default=str)
    return write_text_atomic(out_dir / "model_meta.json", text + "\n")
