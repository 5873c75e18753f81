"""The generator stage's config schema: ``conf/generator.yaml`` composes onto it; typos are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ragdistill.common.config import StageConfig, TeacherConfig, register_schema


@dataclass
class PromptSettings:
    """The one prompt every verb uses (teach, train, evaluate, export's smoke test).

    ``template`` gets ``{contexts}`` (the numbered passages) and ``{question}``. ``answer_format``
    ``json`` asks for ``{"answer": ...}`` (plus ``"rationale"`` in rationale mode) and is validated
    against ``json_schema``; ``text`` takes the reply as the answer (after ``Answer:`` in rationale mode).
    """

    system: str = "You answer questions using only the given context passages."
    template: str = (
        "Context passages:\n{contexts}\n\nQuestion: {question}\n\n"
        "Answer with the shortest exact phrase from the passages that answers the question; no full sentence."
    )
    context_template: str = "[{n}] {title}: {text}"
    answer_format: str = "text"  # text | json
    json_instruction: str = 'Reply with JSON only: {{"answer": "<short answer>"}}.'
    rationale: bool = False  # chain-of-thought: the teacher explains, then answers
    rationale_instruction: str = "First explain briefly which passage supports the answer, then write 'Answer:' and the short answer."
    json_rationale_instruction: str = 'Reply with JSON only: {{"rationale": "<one sentence>", "answer": "<short answer>"}}.'
    json_schema: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"answer": {"type": "string", "minLength": 1}, "rationale": {"type": "string"}},
            "required": ["answer"],
        }
    )
    max_context_chars: int = 1200  # per passage, so prompts stay short on CPU


@dataclass
class RetrievalSettings:
    """Contexts shown with each question: BM25 top-k over the corpus, the gold paragraph always in."""

    top_k: int = 2
    include_gold: bool = True
    shuffle: bool = True  # seeded per question, so the gold passage is not always first


@dataclass
class TeachConfig:
    max_train_questions: int | None = 200  # questions labelled for training (seeded sample of the train split)
    labels_files: list[str] = field(default_factory=lambda: ["data/labels/generator.jsonl"])  # imported into the cache first
    rationale_max_new_tokens: int = 96


@dataclass
class JudgeSettings:
    """Optional LLM-as-judge filter through any generation teacher backend."""

    enabled: bool = False
    teacher: TeacherConfig | None = None  # None = the stage's teacher
    min_score: int = 3  # 1..5
    max_new_tokens: int = 8


@dataclass
class FilterSettings:
    """What a teacher answer must pass to become a training example (each filter reports its drops)."""

    min_length_pct: float = 0.0  # drop answers shorter than this percentile of answer lengths (tokens)
    max_length_pct: float = 98.0  # drop answers longer than this percentile
    max_answer_words: int = 40  # absolute ceiling on top of the percentile
    min_grounding: float = 0.75  # share of the answer's content tokens found in the contexts
    judge: JudgeSettings = field(default_factory=JudgeSettings)


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class TrainSettings:
    method: str = "sft"  # sft (sequence-level KD on teacher answers) | gkd (logit KD, shared tokenizer only)
    quantization: str = "auto"  # auto (QLoRA 4-bit when CUDA, else LoRA) | 4bit | none
    epochs: float = 2.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.0  # short CPU runs: a rounded-up warmup step would train with lr 0
    max_length: int = 768
    bf16: str = "auto"  # auto: bf16 autocast on a bf16-capable GPU, or a CPU with AVX512-BF16/AMX (~2x faster matmuls); true | false
    gradient_checkpointing: bool = False  # TRL defaults to True; a 135M student does not need it and CPU pays ~30% for it
    max_examples: int | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    gkd_lmbda: float = 0.0  # share of on-policy (student-generated) batches; 0 = off-policy, cheap on CPU
    gkd_beta: float = 0.5  # generalised JSD interpolation
    gkd_temperature: float = 0.9


@dataclass
class ExportSettings:
    smoke_test: bool = True  # load the export (vLLM when importable, else transformers) and generate
    smoke_questions: int = 2
    port: int = 8000
    max_model_len: int = 2048
    speculative_tokens: int = 5  # draft tokens per step in the speculative-decoding command (student drafts, teacher verifies)


@dataclass
class RagasJudgeSettings:
    """RAGAS LLM-judged metrics (faithfulness, answer relevancy, context precision/recall)."""

    enabled: bool = False  # off by default on CPU: a small local judge is slow and rarely emits ragas' JSON
    teacher: TeacherConfig | None = None  # judge backend; None = the stage's teacher
    embeddings: str = "minilm-l6"  # for answer relevancy
    max_questions: int = 10
    metrics: list[str] = field(default_factory=lambda: ["faithfulness", "answer_relevancy", "context_precision", "context_recall"])


@dataclass
class EvaluateSettings:
    max_test_questions: int = 100
    batch_size: int = 8
    latency_items: int = 8  # answers timed one by one per system (p50/p95)
    teacher_latency_items: int = 4  # the teacher is slow on CPU; its quality answers come from the label cache
    max_examples: int = 10  # error-analysis examples kept in results.json
    ragas: RagasJudgeSettings = field(default_factory=RagasJudgeSettings)


@dataclass
class GeneratorSettings:
    """Stage-specific settings (the ``generator`` group, ``conf/generator/*.yaml``)."""

    prompt: PromptSettings = field(default_factory=PromptSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    teach: TeachConfig = field(default_factory=TeachConfig)
    filters: FilterSettings = field(default_factory=FilterSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    student_max_new_tokens: int = 24


@dataclass
class GeneratorConfig(StageConfig):
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)


register_schema("generator_schema", GeneratorConfig)
