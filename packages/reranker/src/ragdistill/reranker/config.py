"""The reranker stage's config schema: ``conf/reranker.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class CandidatesConfig:
    """First-stage candidates the teacher and students rerank (BM25 unless ``file`` is given)."""

    file: str | None = None  # JSONL {query_id, doc_ids[, scores]} per line, replaces BM25
    train_k: int = 8  # candidates per training query: train.list_size uses the first ones, so label no more
    eval_k: int = 30  # candidates per held-out query reranked by evaluate
    always_include_positive: bool = True  # training lists: put the judged positive first even if BM25 missed it


@dataclass
class FilterConfig:
    """Drop training queries whose teacher is ambiguous: the judged positive must beat the
    ``against_rank``-th best negative by at least ``min_margin`` (teacher logits)."""

    enabled: bool = True
    min_margin: float = 0.0
    against_rank: int = 1


@dataclass
class LossConfig:
    """Weights of the distillation losses (0 = off); any combination is summed."""

    margin_mse: float = 1.0  # (q, pos, neg) teacher margins, Hofstaetter et al. 2020
    listwise_kl: float = 1.0  # KL over each query's candidate list at ``temperature``
    mse: float = 0.0  # plain MSE on the teacher's scores
    temperature: float = 1.0
    # per-list z-scores of the teacher's scores before any loss (scale-free: see losses/base.py); none = raw
    teacher_norm: str = "zscore"


@dataclass
class TrainConfig:
    queries_per_batch: int = 4  # each brings its whole candidate list
    list_size: int = 8  # candidates per query in a training list (positive + hardest negatives)
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    student_layers: int | None = None  # keep only the first N transformer layers (faster student)
    logging_steps: int = 10


@dataclass
class ColbertConfig:
    """The late-interaction student (MaxSim over token embeddings), distilled with listwise KL."""

    enabled: bool = True
    model: str = "minilm-l6"
    dim: int = 128
    query_max_length: int = 32
    doc_max_length: int = 128
    learning_rate: float = 5e-5
    temperature: float = 1.0
    index_scope: str = "candidates"  # candidates (every document evaluate reranks) | corpus


@dataclass
class ExportConfig:
    quantize: bool = True
    quantization: str = "avx512_vnni"  # arm64 | avx2 | avx512 | avx512_vnni (optimum AutoQuantizationConfig)
    parity_pairs: int = 200
    min_spearman: float = 0.99


@dataclass
class EvalConfig:
    batch_size: int = 32
    latency_queries: int = 5  # queries timed for p50/p95 (each with ``latency_candidates`` documents)
    latency_candidates: int = 100
    biencoders: list[str] = field(default_factory=lambda: ["minilm-l6", "mpnet"])  # reference rows: cosine, no reranking


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
class RerankerSettings:
    """Stage-specific settings (the ``reranker`` group, ``conf/reranker/*.yaml``)."""

    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    colbert: ColbertConfig = field(default_factory=ColbertConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    build_teacher: BuildTeacherConfig = field(default_factory=BuildTeacherConfig)
    # shipped teacher labels imported into the label cache before labelling: "auto" =
    # <data dir>/labels/reranker-<data.name>.jsonl when it exists; null = none; else a path
    labels_file: str | None = "auto"


@dataclass
class RerankerConfig(StageConfig):
    reranker: RerankerSettings = field(default_factory=RerankerSettings)


register_schema("reranker_schema", RerankerConfig)
