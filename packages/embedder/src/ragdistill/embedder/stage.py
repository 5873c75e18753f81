"""The embedder stage: bi-encoder distillation on the :class:`~ragdistill.common.stage.Stage` hooks.

The verbs live in their modules (``teach``, ``train``, ``export``, ``evaluate``) and are imported
when they run, so ``import ragdistill.embedder`` loads no torch. What the shared operations need
(calibrate, the ``routed`` variant, the monitor, rounds, export-labels) is the hooks below: a
held-out record is one test query (``{"id", "query", "relevant"}``), an output its
:class:`~ragdistill.embedder.profiles.ScoreProfile` over the reference corpus (the evaluate slice).
"""

from __future__ import annotations

from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.results import TeachResult
from ragdistill.common.stage import Predictor, QueueItem, Record, Scorer, Stage
from ragdistill.embedder.config import EmbedderConfig, System

SIGNALS = ("margin", "top_score")


class EmbedderStage(Stage):
    name = "embedder"
    description = ("Bi-encoder distillation: MSE on teacher embeddings, contrastive with teacher-mined hard negatives, "
                   "Matryoshka; ONNX (+int8) export")
    schema = EmbedderConfig
    order = 20
    slot = "embedder"  # the e2e pipeline's retriever encoder
    teacher_capability = "embed"
    variants = tuple(s.value for s in System)
    call_fields = ("query",)  # a record is one query; the pipeline component itself is an Encoder (texts, is_query)
    signals = SIGNALS
    quality_metric = "ndcg@10"

    # ---- the four verbs

    def teach(self, cfg: Any) -> TeachResult:
        from ragdistill.embedder.teach import teach

        return teach(cfg, self.teacher(cfg))

    # ---- nouns

    def teacher(self, cfg: Any) -> Any:
        from ragdistill.embedder.teacher import embed_teacher

        return embed_teacher(cfg)

    def held_out(self, cfg: Any, n: int | None = None) -> list[Record]:
        from ragdistill.embedder.data import held_out_records, load_data

        return held_out_records(load_data(cfg), cfg.data.test_split, n)

    def predictor(self, cfg: Any, variant: str) -> Predictor:
        """Per record, the score profile of its query over the reference corpus under ``variant``;
        the corpus is encoded once, the teacher's vectors come from the label cache."""
        from ragdistill.embedder.data import load_data, reference_corpus
        from ragdistill.embedder.profiles import profiles, unit_rows
        from ragdistill.embedder.systems import build_system

        system = build_system(cfg, variant)
        doc_ids, texts = reference_corpus(load_data(cfg))
        docs = unit_rows(system.encode(texts))

        def predict(records: list[Record]) -> list[Any]:
            queries = []
            for i, r in enumerate(records):
                q = r.get("query")
                if not isinstance(q, str):
                    raise RagdistillError(
                        f"embedder: input {r.get('id', i)!r} needs a 'query' string (got {type(q).__name__}); the embedder's "
                        "routed and monitored unit is one query ranked over the reference corpus, not an encoder call on "
                        "a batch of texts (that is component(cfg, variant))")
                queries.append(q)
            return profiles(system.encode(queries), docs, doc_ids) if queries else []

        predict.model_path = str(system.path) if system.path is not None else None  # type: ignore[attr-defined]
        return predict

    def scorer(self, cfg: Any, signal: str) -> Scorer:
        """The distilled student's profiles with a confidence each: the margin between its two best
        documents (``margin``) or its best score (``top_score``)."""
        from ragdistill.common.signals import get_signal

        if signal not in SIGNALS:
            raise RagdistillError(f"routing.signal={signal!r}: the embedder routes on {', '.join(SIGNALS)}")
        confidence = get_signal(signal)
        predict = self.predictor(cfg, "student")

        def score(records: list[Record]) -> tuple[list[Any], list[float]]:
            outs = predict(records)
            return outs, [float(confidence(o)) for o in outs]

        score.model_path = predict.model_path  # type: ignore[attr-defined]
        return score

    def quality(self, cfg: Any, records: list[Record], outputs: list[Any]) -> list[float]:
        from ragdistill.embedder.profiles import ndcg_at_10

        return ndcg_at_10(records, outputs)

    def disagreement(self, record: Record, student: Any, teacher: Any) -> float:
        from ragdistill.embedder.profiles import disagreement

        return disagreement(student, teacher)

    def divergence_metrics(self, records: list[Record], student: list[Any], teacher: list[Any]) -> dict[str, float]:
        from ragdistill.embedder.profiles import divergence

        return divergence(student, teacher)

    def queue_examples(self, cfg: Any, record: Record, teacher_output: Any) -> list[QueueItem]:
        """The query text with the teacher's embedding of it: the label-cache entry teach makes for it."""
        from ragdistill.embedder.teacher import TEMPLATE

        vector = getattr(teacher_output, "query", None)
        if vector is None:
            raise RagdistillError("embedder queue: the teacher output carries no query embedding; pass the teacher predictor's output")
        return [(record["query"], vector, TEMPLATE)]

    def add_training_examples(self, cfg: Any, items: list[QueueItem]) -> dict[str, Any]:
        """Queued queries have no judged positive: they join ``teach/mse_texts.jsonl``, texts ``train``
        distils by MSE alone; a text already there or among the training queries is skipped."""
        from ragdistill.embedder.artifacts import add_mse_texts, read_triples
        from ragdistill.embedder.data import load_data
        from ragdistill.embedder.teacher import TEMPLATE

        bad = [(p, t) for p, _, t in items if t != TEMPLATE or not isinstance(p, str)]
        if bad:
            raise RagdistillError(f"embedder queue: an item {bad[0][0]!r} of template {bad[0][1]!r}; the embedder queues query "
                                  f"texts of template {TEMPLATE!r} only (a queue of another stage? check data.extra)")
        data = load_data(cfg)
        known = {data.queries[t.query_id] for t in read_triples(cfg) if t.query_id in data.queries}
        return add_mse_texts(cfg, [p for p, _, _ in items], [v for _, v, _ in items], known)
