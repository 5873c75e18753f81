"""The embedder stage's config schema: ``conf/embedder.yaml`` composes onto it; typos are errors.

One group, ``embedder``, nested per verb (``embedder.teach`` / ``train`` / ``export`` /
``evaluate``); every verb reads the whole group, so ``ragdistill embedder train
embedder.train.losses=[mse,mnrl] embedder.train.matryoshka=[384,128,64]`` and a later
``evaluate`` agree on what was trained. Choices are Enums, checked when the config is composed.
The defaults live here only (``conf/embedder.yaml`` picks the teacher, student and data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ragdistill.common.config import EvaluateConfig, ExportConfig, StageConfig, TeachConfig, TeacherConfig, TrainConfig


class Loss(Enum):
    """A distillation loss of :class:`~ragdistill.embedder.losses.DistillationLoss`."""

    mse = "mse"  # squared L2 to the teacher's embedding (feature distillation)
    mnrl = "mnrl"  # MultipleNegativesRankingLoss: in-batch + teacher-mined negatives
    margin_mse = "margin_mse"  # MarginMSE to the teacher's cos(q, pos) - cos(q, neg)


class Projection(Enum):
    """How MSE compares a student narrower than the teacher."""

    learned = "learned"  # a trained Linear(student_dim, teacher_dim)
    pca = "pca"  # the teacher reduced to the student's width
    none = "none"  # no map: an error when the widths differ


class Quantization(Enum):
    """onnxruntime's dynamic int8 presets (``AutoQuantizationConfig.<preset>``)."""

    arm64 = "arm64"
    avx2 = "avx2"
    avx512 = "avx512"
    avx512_vnni = "avx512_vnni"


class System(Enum):
    """A column of evaluate's comparison (and a variant of the pipeline component)."""

    teacher = "teacher"
    student_base = "student_base"
    student = "student"
    student_onnx = "student_onnx"
    student_onnx_int8 = "student_onnx_int8"


def _training_args() -> dict[str, Any]:
    """SentenceTransformerTrainingArguments the stage sets unless ``embedder.train.args`` says otherwise."""
    return {
        "num_train_epochs": 1.0,
        "max_steps": -1,  # > 0 overrides num_train_epochs
        "per_device_train_batch_size": 32,
        "learning_rate": 2e-5,
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "eval_steps": None,  # None = evaluate (and keep the best checkpoint) once per epoch
        "save_total_limit": 2,
        "batch_sampler": "no_duplicates",  # MNRL: no text twice in a batch (a duplicate would be a false negative)
        "use_cpu": True,
        "dataloader_num_workers": 0,
    }


@dataclass
class EmbedderTeachConfig(TeachConfig):
    """``embedder.teach``: hard-negative mining on the teacher's index."""

    shipped_labels: list[str] = field(default_factory=lambda: ["data/labels/embedder*.jsonl*"])
    mining_depth: int = 30  # teacher top-k searched per training query
    negatives_per_query: int = 3  # mined negatives kept per query (one training row each)
    mining_margin: float = 0.05  # drop candidates scoring > (lowest positive score - margin): likely false negatives
    mining_skip_top: int = 0  # also skip the teacher's first k non-positive hits (extra false-negative guard)
    # unlabelled text for train's MSE part (feature distillation needs no queries): the corpora of these data sets
    # (bundled names, BEIR folders, QA files or HF ids, as data.path takes), embedded by the teacher into
    # mse_texts.jsonl, e.g. [canard] (QuAC's Wikipedia answer spans; docs/embedder.md has what it did at full size)
    mse_extra: list[str] = field(default_factory=list)
    mse_extra_docs: int | None = 2000  # a seeded sample of this many documents from each; null = every document


@dataclass
class EmbedderTrainConfig(TrainConfig):
    """``embedder.train``: the loss mix and what distillation adds; ``args`` go to SentenceTransformerTrainingArguments."""

    args: dict[str, Any] = field(default_factory=_training_args)
    losses: list[Loss] = field(default_factory=lambda: [Loss.mse, Loss.mnrl])
    loss_weights: dict[Loss, float] = field(default_factory=lambda: dict.fromkeys(Loss, 1.0))
    projection: Projection = Projection.learned  # teacher dim != student dim
    matryoshka: list[int] = field(default_factory=lambda: [384, 256, 128, 96, 64])  # [] = no Matryoshka
    matryoshka_weights: list[float] | None = None
    mnrl_scale: float = 20.0
    max_length: int | None = None  # token limit while training (None = student.max_length)
    val_fraction: float = 0.1  # training queries held out for the in-training evaluator (never the test split)
    val_max_docs: int = 1000  # corpus size the in-training evaluator ranks (val positives always kept)
    early_stopping_patience: int = 2  # evaluations without NDCG@10 gain before stopping; 0 = off
    negatives_per_query: int | None = None  # the first (hardest) n of each query's mined negatives; None = all teach mined
    # feature distillation without queries: corpus documents trained by MSE alone on their teacher embeddings
    # (teach already has them). None = every document, 0 = none, n = a seeded sample of n
    mse_corpus_docs: int | None = None
    # margin_mse's target from another teacher's (query, document) scores instead of the embedding teacher's
    # cosines: a scoring teacher config, e.g. the reranker's `teacher@embedder.train.margin_teacher=hybrid-mpnet-bm25`.
    # Its scores are labelled through the label cache under the reranker's keys (one cache serves both stages)
    margin_teacher: TeacherConfig | None = None
    margin_scale: float = 1.0  # the margin teacher's margins are multiplied by this (put them on the cosine scale)
    # the undistilled student's share in the saved weights (WiSE-FT weight-space merge, after the best checkpoint is
    # restored): 0 = the distilled weights as trained; 0.5 = their midpoint with the starting checkpoint
    base_weight: float = 0.0
    # learning without forgetting: documents of other data sets on which the student keeps its own starting embeddings
    # (MSE to the undistilled student's vectors, no teacher), so in-domain distillation need not cost unseen data
    anchor_data: list[str] = field(default_factory=list)  # bundled names, BEIR folders, QA files; [] = off
    anchor_docs: int | None = 2000  # a seeded sample of this many documents from each; null = every document
    anchor_weight: float = 1.0


@dataclass
class EmbedderExportConfig(ExportConfig):
    """``embedder.export``: ONNX fp32 + dynamic int8, each held to its parity bar (mean cosine to torch)."""

    min_parity_quantized: float = 0.99  # as before the gate was shared; per-channel int8 measures 0.990-0.996 here
    quantization: Quantization = Quantization.avx512_vnni
    per_channel: bool = True  # per-tensor int8 loses too much (cosine 0.89-0.97); per channel keeps >= 0.99
    parity_texts: int = 64  # held-out test queries and documents the parity is measured on


@dataclass
class EmbedderEvaluateConfig(EvaluateConfig):
    """``embedder.evaluate``: which systems, at which Matryoshka dims; ``batch_size`` is the encoding batch."""

    systems: list[System] = field(default_factory=lambda: list(System))
    dims: list[int] | None = None  # Matryoshka dims to score; None = embedder.train.matryoshka
    mteb: bool = True  # also score through MTEB's own retrieval evaluator (local task)
    speed_texts: int = 64  # queries encoded for throughput (batch = batch_size)
    latency_queries: int = 32  # single-query calls for p50/p95
    # the work dir whose trained student and export are evaluated (None = paths.work_dir): score a student on
    # data it never saw (data=squad) with the results written under this run's own work dir
    models_from: str | None = None


@dataclass
class EmbedderGroupConfig:
    """The ``embedder`` group: one part per verb."""

    teach: EmbedderTeachConfig = field(default_factory=EmbedderTeachConfig)
    train: EmbedderTrainConfig = field(default_factory=EmbedderTrainConfig)
    export: EmbedderExportConfig = field(default_factory=EmbedderExportConfig)
    evaluate: EmbedderEvaluateConfig = field(default_factory=EmbedderEvaluateConfig)


@dataclass
class EmbedderConfig(StageConfig):
    embedder: EmbedderGroupConfig = field(default_factory=EmbedderGroupConfig)
