"""The query_rewriter stage's config schema: ``conf/query_rewriter.yaml`` composes onto it; typos are errors.

One group, ``query_rewriter``, nested per verb (``teach``, ``train``, ``export``, ``evaluate``). The
defaults live here only; the YAML files set what differs (``conf/query_rewriter/term_selection.yaml``).
Choices are Enums, so an unknown task or system is an error when the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ragdistill.common.config import EvaluateConfig, ExportConfig, StageConfig, TeachConfig, TrainConfig


class Task(StrEnum):
    """What the teacher labels and the student learns (prompts.py has both formats)."""

    rewrite = "rewrite"  # conversation + follow-up -> one standalone search query
    expansion = "expansion"  # a query -> 3-5 reformulations


class System(StrEnum):
    """What evaluate scores side by side."""

    teacher = "teacher"
    student_base = "student_base"  # the student before distillation
    student = "student"
    student_onnx = "student_onnx"
    student_onnx_int8 = "student_onnx_int8"


class StudentKind(StrEnum):
    """How a student checkpoint trains and runs, read from its config (student.py): not a setting."""

    causal = "causal"  # decoder-only LM: Trainer, completion-only loss
    seq2seq = "seq2seq"  # encoder-decoder (T5 family, bert2bert:): Seq2SeqTrainer
    term_selection = "term_selection"  # encoder-only: a token classifier (term_selection.py)


@dataclass
class RewriterTeachConfig(TeachConfig):
    """What the teacher labels and which of its outputs become training targets."""

    tasks: list[Task] = field(default_factory=lambda: [Task.rewrite, Task.expansion])
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
    # the bundled data's teacher labels (887: teach's and evaluate's defaults), imported into the cache first
    shipped_labels: list[str] = field(default_factory=lambda: ["data/labels/query_rewriter*.jsonl"])


def _train_args() -> dict[str, Any]:
    """Today's training defaults under transformers' ``TrainingArguments`` names (all of them here, so
    each is overridden without a ``+``: ``query_rewriter.train.args.max_steps=4``)."""
    return {"num_train_epochs": 3.0, "max_steps": -1, "learning_rate": 1e-4, "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 1, "warmup_ratio": 0.0, "weight_decay": 0.0}


@dataclass
class RewriterTrainConfig(TrainConfig):
    """Distillation: teacher outputs as targets, best checkpoint by held-out recall lift. ``args`` go to
    ``TrainingArguments`` (``Seq2SeqTrainingArguments`` for an encoder-decoder student)."""

    args: dict[str, Any] = field(default_factory=_train_args)
    max_source_length: int = 256
    max_target_length: int = 64
    human_mix: float = 0.0  # fraction of rewrite targets replaced by the human CANARD rewrite (0 = teacher only)
    human_records: int = 0  # extra untaught train records whose human rewrite is added as a target (0 = none)
    eval_steps: int = 0  # 0 = validate once per epoch; with args.max_steps, once at the end
    val_records: int = 96  # answerable records from the end of the train split (never taught) for checkpoint choice
    select_best: bool = True  # keep the checkpoint with the highest validation recall lift
    # a term selector's tagging threshold: the one of these with the best validation recall lift is kept
    # (lower adds more words; pass one value to fix it, docs/query_rewriter.md has the trade-off)
    term_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005])


@dataclass
class RewriterExportConfig(ExportConfig):
    """ONNX export; parity = share of held-out inputs whose greedy output equals torch's. The bars:
    fp32 at 0.9 (the old warning level; measured 24/24 for SmolLM2 and the term selector), int8 at 0.4
    (measured on 24 test records: the term selector 12/24, SmolLM2 16/24; two inputs of headroom below
    the lowest, since int8 kernels differ between CPUs)."""

    min_parity: float = 0.9
    min_parity_quantized: float = 0.4
    int8: bool = True  # also write a dynamic-int8 (per-channel) quantised copy
    parity_records: int = 24  # held-out inputs whose greedy outputs are compared with torch's


@dataclass
class RewriterEvaluateConfig(EvaluateConfig):
    """Held-out evaluation: CANARD test (never taught) and expansion test queries."""

    batch_size: int = 8  # generation batch size for quality runs (and calibrate, routing, the monitor)
    test_records: int = 200  # answerable CANARD test records (from the start of the split)
    expansion_data: list[str] = field(default_factory=lambda: ["scifact"])
    expansion_queries: int = 16  # test queries per expansion data set
    latency_queries: int = 8  # per system, batch size 1
    teacher_latency: bool = True  # time the live teacher too (slow on CPU: loads the 0.5B model)
    systems: list[System] = field(default_factory=lambda: list(System))


@dataclass
class RewriterConfig:
    """The ``query_rewriter`` group: one sub-group per verb."""

    teach: RewriterTeachConfig = field(default_factory=RewriterTeachConfig)
    train: RewriterTrainConfig = field(default_factory=RewriterTrainConfig)
    export: RewriterExportConfig = field(default_factory=RewriterExportConfig)
    evaluate: RewriterEvaluateConfig = field(default_factory=RewriterEvaluateConfig)


@dataclass
class QueryRewriterConfig(StageConfig):
    query_rewriter: RewriterConfig = field(default_factory=RewriterConfig)
