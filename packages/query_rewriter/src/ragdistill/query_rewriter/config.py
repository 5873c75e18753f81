"""The query_rewriter stage's config schema: ``conf/query_rewriter.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.common.config import StageConfig, register_schema


@dataclass
class TeachConfig:
    """What the teacher labels and which of its outputs become training targets."""

    tasks: list[str] = field(default_factory=lambda: ["rewrite", "expansion"])
    rewrite_records: int = 640  # CANARD train-split records to rewrite (from the start of the split)
    rewrite_shots: int = 6  # human rewrites of the train split shown to the teacher as examples (0 = hand-written ones)
    shot_data: str | None = "canard"  # where they come from (a CANARD-format folder or name; null = the run's data)
    expansion_data: list[str] = field(default_factory=lambda: ["scifact", "squad"])  # retrieval sets whose train queries are expanded
    expansion_queries: int = 16  # per expansion data set
    rewrite_max_new_tokens: int = 32
    expansion_max_new_tokens: int = 64
    max_turns: int = 2  # Q/A turns of history shown (older ones dropped)
    max_answer_chars: int = 160  # long answers in the history are cut
    # filters (see filters.py)
    min_expansions: int = 3
    max_expansions: int = 5
    max_words: int = 40
    max_ratio: float = 4.0
    # shipped teacher labels imported into the cache before labelling (globs under the project home)
    import_labels: list[str] = field(default_factory=lambda: ["data/labels/query_rewriter*.jsonl"])


@dataclass
class TrainSettings:
    """Distillation: teacher outputs as targets, best checkpoint by held-out recall lift."""

    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_source_length: int = 256
    max_target_length: int = 64
    human_mix: float = 0.0  # fraction of rewrite targets replaced by the human CANARD rewrite (0 = teacher only)
    human_records: int = 0  # extra untaught train records whose human rewrite is added as a target (0 = none)
    eval_steps: int = 0  # 0 = validate once per epoch; with max_steps, once at the end
    val_records: int = 96  # answerable records from the end of the train split (never taught) for checkpoint choice
    select_best: bool = True  # keep the checkpoint with the highest validation recall lift
    # a term selector's tagging threshold: the one of these with the best validation recall lift is kept
    # (lower adds more words; pass one value to fix it, docs/query_rewriter.md has the trade-off)
    term_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005])


@dataclass
class ExportSettings:
    int8: bool = True  # also write a dynamic-int8 (per-channel) quantised copy
    parity_records: int = 24  # held-out inputs whose greedy outputs must match torch


@dataclass
class EvalSettings:
    """Held-out evaluation: CANARD test (never taught) and expansion test queries."""

    test_records: int = 200  # answerable CANARD test records (from the start of the split)
    expansion_data: list[str] = field(default_factory=lambda: ["scifact"])
    expansion_queries: int = 16  # test queries per expansion data set
    latency_queries: int = 8  # per system, batch size 1
    teacher_latency: bool = True  # time the live teacher too (slow on CPU: loads the 0.5B model)
    batch_size: int = 8  # generation batch size for quality runs
    systems: list[str] = field(default_factory=lambda: ["teacher", "student_base", "student", "student_onnx", "student_onnx_int8"])


@dataclass
class QueryRewriterSettings:
    """Stage-specific settings (the ``query_rewriter`` group, ``conf/query_rewriter/*.yaml``)."""

    teach: TeachConfig = field(default_factory=TeachConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    evaluate: EvalSettings = field(default_factory=EvalSettings)


@dataclass
class QueryRewriterConfig(StageConfig):
    query_rewriter: QueryRewriterSettings = field(default_factory=QueryRewriterSettings)


register_schema("query_rewriter_schema", QueryRewriterConfig)
