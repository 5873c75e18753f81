"""The e2e harness config (``conf/e2e.yaml``): which variant each stage runs, and the budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ragdistill.common.config import DataConfig, PathsConfig, RunConfig, register_schema


@dataclass
class PipelineChoice:
    """Per slot (filled by the installed stage whose ``Stage.slot`` names it): ``teacher``,
    ``student_base`` (undistilled), ``student``, ``student_onnx``, ``routed`` (the student, the teacher
    below the threshold ``ragdistill <stage> calibrate`` chose; for the embedder: retrieval from the
    student's index, from the teacher's when the margin / top score of the student's hits is below
    it), a stage's own extra student (the reranker's ``colbert_base``/``colbert``) or ``off``. The
    embedder cannot be ``off``; ``generator=off`` skips generation metrics. ``auto`` (the rewriter's
    default): ``student`` when the held-out questions carry a conversation history, else ``off``."""

    rewriter: str = "auto"  # auto: the student where the held-out questions have a conversation history (data=canard), else off
    embedder: str = "student"
    reranker: str = "student"
    generator: str = "student"


@dataclass
class RetrievalConfig:
    top_k: int = 100  # first-stage candidates (Recall@100)
    rerank_k: int = 20  # candidates the reranker rescores
    n_contexts: int = 3  # passages given to the generator
    # fuse the reranker's scores with the first stage's (per-list z-scores; (1 - w) * reranker + w * first stage,
    # ragdistill.common.fusion); null = the reranker's order alone
    rerank_fusion: float | None = None


@dataclass
class CostConfig:
    hourly_price_usd: float = 0.20  # price of the machine the pipeline runs on (2 vCPU class)


@dataclass
class RagasConfig:
    """RAGAS LLM-judged metrics on the answered questions, through the generator package's judge.
    Off by default: measured on 2 shared CPU cores, even SmolLM2-135M as judge takes 15-25 s per
    question and metric (long ragas prompts), and the default 0.5B judge is slower still."""

    enabled: bool = False
    max_questions: int = 3  # the first N answered questions are judged
    # generator-config overrides that pick the judge; [] = the generator stage's teacher (local),
    # e.g. [teacher=openai, teacher.model=gpt-4o-mini] for an API judge
    judge_overrides: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: ["faithfulness", "answer_relevancy", "context_precision", "context_recall"])
    embeddings: str = "minilm-l6"  # answer relevancy's embedder
    max_new_tokens: int = 256  # per judge reply
    retries: int = 2  # re-asks when a reply is not valid JSON; then the sample counts as failed


class Swap(Enum):
    """``off``: one pipeline, as configured. ``matrix``: all teacher, each active slot alone swapped to
    each of ``swap_variants``, then all student, on the same queries (ragdistill.e2e.swap)."""

    off = "off"
    matrix = "matrix"


@dataclass
class E2EConfig:
    pipeline: PipelineChoice = field(default_factory=PipelineChoice)
    data: DataConfig = field(default_factory=lambda: DataConfig(name="squad"))
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    max_generate: int = 20  # questions answered per run (generation is the slow part on CPU)
    warmup: bool = True  # one untimed call per stage first, so lazily loaded models don't bill their load as latency
    mteb: bool = True  # also score the embedder with MTEB on the held-out split as a local custom task (reuses the index's vectors)
    ragas: RagasConfig = field(default_factory=RagasConfig)
    # per-stage config overrides passed when loading each stage's component, e.g. {embedder: [student.model=x]}
    stage_overrides: dict[str, list[str]] = field(default_factory=dict)
    out_dir: str | None = None  # default: <work_dir>/e2e/runs/<time>_<pipeline> (swap=matrix: <work_dir>/e2e/matrix/<time>)
    swap: Swap = Swap.off
    swap_variants: list[str] = field(default_factory=lambda: ["student", "student_onnx"])  # what each stage is swapped to


register_schema("e2e_schema", E2EConfig)  # with the shared group schemas (data=scifact)
