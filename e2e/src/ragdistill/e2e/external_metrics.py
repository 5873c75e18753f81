"""MTEB and RAGAS figures for a pipeline run, through the helpers the stage packages already own.

MTEB scores the run's embedder on the held-out split as a local custom retrieval task
(``ragdistill.embedder.mteb_task``), serving document vectors from the faiss index the run built,
so only the queries are encoded again. RAGAS judges the run's answers with the generator
package's judge (``ragdistill.generator.ragas_judge``): failures are counted, never averaged in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ragdistill.common.config import compose
from ragdistill.common.data import Document, Qrels
from ragdistill.common.errors import RagdistillError
from ragdistill.common.logging import get_logger
from ragdistill.common.pipeline import Encoder
from ragdistill.e2e.retrieval import FaissRetriever

log = get_logger(__name__)


def mteb_scores(encoder: Encoder, retriever: FaissRetriever, corpus: dict[str, Document], queries: dict[str, str],
                qrels: Qrels, task_name: str, split: str, out_dir: Path, standard: str | None = None) -> dict[str, Any]:
    """MTEB's own retrieval evaluation of ``encoder`` on (corpus, queries, qrels); its JSON goes to ``out_dir``.
    ``standard`` (``data.mteb_task``, e.g. SciFact) scores the run as MTEB's own task on the local data,
    as the embedder stage does; otherwise a custom task called ``task_name``."""
    try:
        from ragdistill.embedder.mteb_task import PrecomputedEncoder, make_task, run_mteb
    except ImportError as e:
        raise RagdistillError(f"mteb=true needs the embedder package (pip install -e packages/embedder), or set mteb=false: {e}") from e
    vecs = retriever.index.reconstruct_n(0, retriever.index.ntotal)
    memo = {corpus[d].full_text: v for d, v in zip(retriever.doc_ids, vecs, strict=True)}
    # every text MTEB asks for that the index does not hold is a query
    enc = PrecomputedEncoder(task_name, lambda texts: encoder(list(texts), is_query=True), memo, int(vecs.shape[1]))
    task = make_task(task_name, corpus, queries, qrels, split, standard=standard)
    scores = run_mteb(task, enc, out_dir)
    name = task.metadata.name
    return {**scores, "task": name, "standard_task": standard is not None and name == standard, "results_file": str(out_dir / f"{name}.json"),
            "texts_from_index": enc.hits, "texts_encoded": enc.misses}


def ragas_scores(cfg: DictConfig, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """RAGAS faithfulness / answer relevancy / context precision / recall on the first
    ``cfg.ragas.max_questions`` answers, judged by the generator stage's teacher unless
    ``cfg.ragas.judge_overrides`` picks another (e.g. an API judge)."""
    try:
        from ragdistill.generator.ragas_judge import ANSWER_METRICS, CONTEXT_METRICS, build_metrics, score_ragas
        from ragdistill.generator.teachers import judge_backend
    except ImportError as e:
        raise RagdistillError(f"ragas.enabled=true needs the generator package (pip install -e packages/generator): {e}") from e
    rc = cfg.ragas
    gcfg = compose("generator", [f"paths.work_dir={cfg.paths.work_dir}", "run.report_to=[]",
                                 *cfg.stage_overrides.get("generator", []), *rc.judge_overrides])
    judge = judge_backend(gcfg, gcfg.generator.evaluate.ragas.teacher or gcfg.teacher)
    metrics, llm = build_metrics(list(rc.metrics), judge, rc.embeddings)
    llm.max_new_tokens, llm.retries = int(rc.max_new_tokens), int(rc.retries)
    rows = [{"question": a["question"], "answer": a["answer"], "contexts": a["contexts"],
             "reference": a["references"][0] if a["references"] else ""} for a in answers[: int(rc.max_questions)]]
    with_ref = [r for r in rows if r["reference"]]  # context precision / recall compare against a reference
    res = {**score_ragas(metrics, rows, ANSWER_METRICS), **score_ragas(metrics, with_ref, CONTEXT_METRICS)}
    return {"judge": judge.teacher_id, "questions": len(rows), "metrics": res,
            "judge_calls": llm.calls, "judge_failures": llm.failures}
