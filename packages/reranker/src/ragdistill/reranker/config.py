"""The reranker stage's config schema: ``conf/reranker.yaml`` composes onto it; typos are errors.

Nested per verb (``reranker.teach|train|export|evaluate``); ``reranker.candidates`` is shared by
teach (training lists) and evaluate (held-out lists), ``reranker.build_teacher`` belongs to the
``build-teacher`` verb. Choices are Enums, checked when the config is composed. Defaults live here
only: ``conf/reranker/default.yaml`` sets nothing these dataclasses already say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ragdistill.common.config import EvaluateConfig, ExportConfig, StageConfig, TeachConfig, TrainConfig


class TeacherNorm(StrEnum):
    """How the losses see the teacher's scores: per-list z-scores (scale-free) or raw."""

    zscore = "zscore"
    none = "none"


class Supervised(StrEnum):
    """The supervised ranking loss on the judged labels (losses/supervised.py)."""

    ce = "ce"  # cross-entropy of the list's softmax on the judged positive
    listnet = "listnet"  # sentence-transformers' ListNetLoss on binary labels
    lambdaloss = "lambdaloss"  # sentence-transformers' LambdaLoss (NDCG-Loss2++ weighting)


class Quantization(StrEnum):
    """The optimum ``AutoQuantizationConfig`` preset the dynamic int8 export is made with (recorded in
    ``export.json``; the file is ``onnx/model_qint8.onnx`` whatever the preset)."""

    arm64 = "arm64"
    avx2 = "avx2"
    avx512 = "avx512"
    avx512_vnni = "avx512_vnni"


class CandidateSource(StrEnum):
    """Candidate lists evaluate reranks."""

    first_stage = "first_stage"  # BM25 top-k, or the lists of reranker.candidates.file
    embedder = "embedder"  # a bi-encoder's cosine top-k over the corpus (the e2e pipeline's first stage)


class IndexScope(StrEnum):
    """Which documents the exported ColBERT index covers."""

    candidates = "candidates"  # every document evaluate reranks
    corpus = "corpus"


@dataclass
class CandidatesConfig:
    """First-stage candidates the teacher and students rerank (BM25 unless ``file`` is given); teach
    and evaluate share them, so every system reranks the same lists."""

    file: str | None = None  # JSONL {query_id, doc_ids[, scores]} per line, replaces BM25
    train_k: int = 8  # candidates per training query: train.list_size uses the first ones, so label no more
    eval_k: int = 30  # candidates per held-out query reranked by evaluate
    always_include_positive: bool = True  # training lists: put the judged positive first even if BM25 missed it
    # the bi-encoder of the ``embedder`` candidate source (evaluate.candidate_sources); None = the embedder
    # stage's distilled student in paths.work_dir when train has written it, else the undistilled minilm-l6
    embedder_model: str | None = None
    embedder_max_length: int = 256


@dataclass
class FilterConfig:
    """Drop training queries whose teacher is ambiguous: the judged positive must beat the
    ``against_rank``-th best negative by at least ``min_margin`` (teacher logits)."""

    enabled: bool = True
    min_margin: float = 0.0
    against_rank: int = 1


@dataclass
class RerankerTeachConfig(TeachConfig):
    """``reranker.teach``: the ambiguity filter and the shipped teacher labels (a label-cache export
    per dataset, imported once: ``teach`` on the bundled SQuAD is a cache read)."""

    shipped_labels: list[str] = field(default_factory=lambda: ["data/labels/reranker-${data.name}.jsonl*"])
    filter: FilterConfig = field(default_factory=FilterConfig)
    # the judged labels folded into the teacher's training-list scores: each judged positive gets
    # + positive_bonus x (the list's standard deviation of teacher scores), before the ambiguity filter
    positive_bonus: float = 0.0


@dataclass
class LossConfig:
    """``kd_weight * (teacher losses) + supervised_weight * (supervised loss)``; inside the teacher
    part, the weights of each distillation loss (0 = off). Each term is logged (``kd_*``, ``sup_*``)."""

    margin_mse: float = 1.0  # (q, pos, neg) teacher margins, Hofstaetter et al. 2020
    listwise_kl: float = 1.0  # KL over each query's candidate list at ``temperature``
    mse: float = 0.0  # plain MSE on the teacher's scores
    temperature: float = 1.0
    # per-list z-scores of the teacher's scores before any loss (scale-free: see losses/base.py); none = raw
    teacher_norm: TeacherNorm = TeacherNorm.zscore
    kd_weight: float = 1.0  # w_kd: the teacher losses above; 0 = labels only
    supervised: Supervised = Supervised.ce  # the loss on the judged labels (a list without a judged positive is an error)
    supervised_weight: float = 1.0  # w_sup; 0 = distillation only


@dataclass
class ColbertConfig:
    """The late-interaction student: colbert-ai's ColBERT model on ``model`` (MaxSim over token
    vectors), trained on the same lists with the same weighted loss (``train.loss``) in its own loop
    (steps and epochs follow ``train.args``; its own learning rate)."""

    enabled: bool = True
    model: str = "minilm-l6"
    dim: int = 128
    query_max_length: int = 32
    doc_max_length: int = 180
    learning_rate: float = 5e-5
    max_steps: int = 0  # 0 = as many as the cross-encoder's arguments ask (train.args); > 0 its own budget


def _training_args() -> dict[str, Any]:
    """CrossEncoderTrainingArguments the stage sets unless ``reranker.train.args`` says otherwise."""
    return {"num_train_epochs": 1.0, "max_steps": -1, "learning_rate": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0.01,
            "logging_steps": 10}


@dataclass
class RerankerTrainConfig(TrainConfig):
    """``reranker.train``: what distillation adds; ``args`` goes to sentence-transformers'
    ``CrossEncoderTrainingArguments`` as is (``reranker.train.args.learning_rate=3e-4``)."""

    args: dict[str, Any] = field(default_factory=_training_args)
    queries_per_batch: int = 4  # each brings its whole candidate list (per_device_train_batch_size)
    list_size: int = 8  # candidates per query in a training list (positive + hardest negatives)
    student_layers: int | None = None  # keep only the first N transformer layers (faster student)
    # a fresh head on a bi-encoder: the pooler reads the [CLS] features standardised over the first
    # pooler_sample_lists training lists (a mean-pooling bi-encoder's [CLS] barely varies; students.py)
    standardize_pooler: bool = True
    pooler_sample_lists: int = 16
    loss: LossConfig = field(default_factory=LossConfig)
    colbert: ColbertConfig = field(default_factory=ColbertConfig)


@dataclass
class RerankerExportConfig(ExportConfig):
    """``reranker.export``: ONNX fp32 + dynamic int8 of the cross-encoder student, Spearman parity
    against torch on ``parity_pairs`` real pairs. fp32 must reach ``min_parity`` (0.99); int8
    ``min_parity_quantized`` (0.9; measured: 0.974 on the demo's near-random student, 0.964-0.998
    in the runs of docs/reranker.md)."""

    quantize: bool = True
    quantization: Quantization = Quantization.avx512_vnni
    parity_pairs: int = 200
    colbert_index_scope: IndexScope = IndexScope.corpus  # what the PLAID index covers (corpus: it can be a first stage)
    colbert_nbits: int = 4  # bits per dimension of the PLAID residuals (colbert-ai's default is 2; 4 keeps MaxSim closer)


@dataclass
class RerankerEvaluateConfig(EvaluateConfig):
    """``reranker.evaluate``: every system side by side on the held-out lists."""

    # the candidate lists reranked: ``first_stage`` (BM25, or reranker.candidates.file) and ``embedder`` (the
    # bi-encoder top-k the e2e pipeline reranks: reranker.candidates.embedder_model); rows of the second are "<system>@embedder"
    candidate_sources: list[CandidateSource] = field(default_factory=lambda: [CandidateSource.first_stage])
    latency_queries: int = 5  # queries timed for p50/p95 (each with ``latency_candidates`` documents)
    latency_candidates: int = 100
    biencoders: list[str] = field(default_factory=lambda: ["minilm-l6", "mpnet"])  # reference rows: cosine, no reranking
    # systems not to evaluate, e.g. [student, student_onnx] when the int8 export is the one that matters (its
    # parity to torch is in export.json) and each costs an hour on the full split; teacher_speed skips timing the teacher
    skip: list[str] = field(default_factory=list)
    # also report each student fused with the first stage's own scores of the list (rows "<system>+fusion";
    # ragdistill.common.fusion: per-list z-scores, (1 - w) * student + w * first stage); null = no fusion rows
    fusion_weight: float | None = 0.5


@dataclass
class BuildTeacherConfig:
    """``ragdistill reranker build-teacher``: a cross-encoder teacher fine-tuned once from a packaged
    encoder on bundled labelled data (question -> gold passage, BM25 hard negatives)."""

    name: str = "ce-mpnet"
    base: str = "mpnet"
    squad_queries: int = 200
    scifact_queries: int = 0  # >0 mixes SciFact train claims in (weak there: see docs/reranker.md)
    negatives: int = 3
    negatives_depth: int = 30
    max_length: int = 128
    batch_size: int = 16
    epochs: float = 1.0
    learning_rate: float = 4e-5
    freeze_layers: int = 6  # embeddings + the first N layers stay fixed (cheaper steps on CPU)
    output_dir: str | None = None  # default: <model cache>/reranker/<name>
    auto: bool = False  # build it when a score is needed and it is missing (once; the demo sets this)


@dataclass
class RerankerSettingsConfig:
    """The ``reranker`` group (``conf/reranker/*.yaml``)."""

    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    teach: RerankerTeachConfig = field(default_factory=RerankerTeachConfig)
    train: RerankerTrainConfig = field(default_factory=RerankerTrainConfig)
    export: RerankerExportConfig = field(default_factory=RerankerExportConfig)
    evaluate: RerankerEvaluateConfig = field(default_factory=RerankerEvaluateConfig)
    build_teacher: BuildTeacherConfig = field(default_factory=BuildTeacherConfig)


@dataclass
class RerankerConfig(StageConfig):
    reranker: RerankerSettingsConfig = field(default_factory=RerankerSettingsConfig)
