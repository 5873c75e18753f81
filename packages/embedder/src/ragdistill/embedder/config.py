"""The embedder stage's config schema: ``conf/embedder.yaml`` composes onto it; typos are errors.

Every verb reads the same ``embedder`` group, so ``ragdistill embedder train embedder.loss=mse+mnrl
embedder.matryoshka=[384,128,64]`` and a later ``evaluate`` agree on what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema

LOSSES = ("mse", "mnrl", "margin_mse")
PROJECTIONS = ("learned", "pca", "none")
QUANTIZATIONS = ("arm64", "avx2", "avx512", "avx512_vnni")
SYSTEMS = ("teacher", "student_base", "student", "student_onnx", "student_onnx_int8")


@dataclass
class EmbedderSettings:
    """Stage-specific settings (the ``embedder`` group, ``conf/embedder/*.yaml``)."""

    # ---- teach: hard-negative mining on the teacher's index
    mining_depth: int = 30  # teacher top-k searched per training query
    negatives_per_query: int = 3  # mined negatives kept per query (one training row each)
    mining_margin: float = 0.05  # drop candidates scoring > (lowest positive score - margin): likely false negatives
    mining_skip_top: int = 0  # also skip the teacher's first k non-positive hits (extra false-negative guard)

    # ---- train
    loss: str = "mse+mnrl"  # '+'-joined subset of: mse, mnrl, margin_mse
    loss_weights: dict[str, float] = field(default_factory=lambda: {"mse": 1.0, "mnrl": 1.0, "margin_mse": 1.0})
    projection: str = "learned"  # teacher dim != student dim: learned | pca | none (error on mismatch)
    matryoshka: list[int] = field(default_factory=lambda: [384, 256, 128, 96, 64])  # [] = no Matryoshka
    matryoshka_weights: list[float] | None = None
    mnrl_scale: float = 20.0
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    train_max_length: int | None = None  # token limit while training (None = student.max_length)
    val_fraction: float = 0.1  # training queries held out for the in-training evaluator (never the test split)
    val_max_docs: int = 1000  # corpus size the in-training evaluator ranks (val positives always kept)
    eval_steps: int | None = None  # None = evaluate once per epoch
    early_stopping_patience: int = 2  # evaluations without NDCG@10 gain before stopping; 0 = off

    # ---- export
    quantization: str = "avx512_vnni"  # onnxruntime dynamic int8 preset: arm64 | avx2 | avx512 | avx512_vnni
    per_channel: bool = True  # per-tensor int8 loses too much (cosine 0.89-0.97); per channel keeps >= 0.99
    parity_threshold: float = 0.99  # mean cosine torch vs ONNX on held-out texts
    parity_texts: int = 64

    # ---- evaluate
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    dims: list[int] | None = None  # Matryoshka dims to score; None = the `matryoshka` list
    encode_batch_size: int = 32
    mteb: bool = True  # also score through MTEB's own retrieval evaluator (custom local task)
    speed_texts: int = 64  # queries encoded for throughput (batch = encode_batch_size)
    latency_queries: int = 32  # single-query calls for p50/p95


@dataclass
class EmbedderConfig(StageConfig):
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)


register_schema("embedder_schema", EmbedderConfig)
