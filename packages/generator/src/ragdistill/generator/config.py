"""The generator stage's config schema: ``conf/generator.yaml`` composes onto it; typos are errors.

One group, ``generator``, nested per verb (``teach`` with its ``filters``, ``train``, ``export``,
``evaluate``); ``prompt``, ``retrieval`` and ``student_max_new_tokens`` sit beside them because every
verb uses them. Choices are Enums, so a wrong value fails when the config is composed. The defaults
live here only (``conf/generator.yaml`` sets what differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ragdistill.common.config import EvaluateConfig, ExportConfig, StageConfig, TeachConfig, TeacherConfig, TrainConfig


class AnswerFormat(StrEnum):
    """How a reply holds its answer: plain text, or JSON validated against ``prompt.json_schema``."""

    text = "text"
    json = "json"


class TrainMethod(StrEnum):
    """``sft``: sequence-level KD on the teacher's answers; ``gkd``: logit KD (one shared tokenizer only);
    ``gold``: cross-tokenizer logit KD (TRL's GOLD, ULD loss: any teacher family)."""

    sft = "sft"
    gkd = "gkd"
    gold = "gold"


class SaveDtype(StrEnum):
    """The dtype train saves the student in (and export ships for vLLM): bf16 halves fp32's size."""

    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


# "4bit" is not a Python name, so the functional form; OmegaConf looks members up by name
Quantization = StrEnum("Quantization", {"auto": "auto", "4bit": "4bit", "none": "none"})
Quantization.__doc__ = "Adapter training: ``auto`` = QLoRA 4-bit on CUDA, plain LoRA elsewhere; ``4bit``; ``none`` (LoRA)."


class Int8Method(StrEnum):
    """The int8 ONNX copy: ``weight_only`` (MatMul weights in 8-bit blocks, fp32 activations) or ``dynamic``
    (weights and activations, optimum's dynamic quantization: drifts most greedy answers of a 135M LM)."""

    weight_only = "weight_only"
    dynamic = "dynamic"


@dataclass
class PromptConfig:
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
    answer_format: AnswerFormat = AnswerFormat.text
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
class RetrievalConfig:
    """Contexts shown with each question: BM25 top-k over the corpus, the gold paragraph always in."""

    top_k: int = 2
    include_gold: bool = True
    shuffle: bool = True  # seeded per question, so the gold passage is not always first


@dataclass
class JudgeConfig:
    """Optional LLM-as-judge filter through any generation teacher backend."""

    enabled: bool = False
    teacher: TeacherConfig | None = None  # None = the stage's teacher
    min_score: int = 3  # 1..5
    max_new_tokens: int = 8


@dataclass
class FilterConfig:
    """What a teacher answer must pass to become a training example (each filter reports its drops)."""

    min_length_pct: float = 0.0  # drop answers shorter than this percentile of answer lengths (words)
    max_length_pct: float = 98.0  # drop answers longer than this percentile
    max_answer_words: int = 40  # absolute ceiling on top of the percentile
    min_grounding: float = 0.75  # share of the answer's content tokens found in the contexts
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class GeneratorTeachConfig(TeachConfig):
    """``generator.teach``: which questions the teacher answers and what its answers must pass."""

    shipped_labels: list[str] = field(default_factory=lambda: ["data/labels/generator*.jsonl*"])
    max_train_questions: int | None = 2000  # questions labelled for training (seeded sample of the train split; all 2,000 ship as labels)
    rationale_max_new_tokens: int = 96  # the teacher's budget when prompt.rationale is on
    filters: FilterConfig = field(default_factory=FilterConfig)


@dataclass
class LoraAdapterConfig:
    """The LoRA adapter (peft.LoraConfig) trained on the student; ``enabled=false`` fine-tunes every weight instead."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def _train_args() -> dict[str, Any]:
    """TRL SFTConfig / GKDConfig arguments, by the library's names (any other of its arguments may be added)."""
    return {
        "num_train_epochs": 1.0,  # the measured recipe: 1 epoch over the ~1,790 answers teach keeps from 2,000
        "max_steps": -1,
        # an effective batch of 4 as 2 x 2: batch 4 at max_length 768 peaked at 10 GB RSS on CPU (49k-token logits,
        # TRL's entropy and accuracy over them) and was OOM-killed on a shared 23 GB machine
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": 5e-4,
        "warmup_ratio": 0.0,  # short CPU runs: a rounded-up warmup step would train with lr 0
        "lr_scheduler_type": "cosine",
        "max_length": 768,
        "gradient_checkpointing": False,  # TRL defaults to True; a 135M student does not need it and CPU pays ~30% for it
        "logging_steps": 1,
        "save_strategy": "steps",  # checkpoints an interrupted run resumes from (removed once it finishes)
        "save_steps": 50,
        "save_total_limit": 1,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }


@dataclass
class GeneratorTrainConfig(TrainConfig):
    """``generator.train``: ``args`` go to TRL's SFTConfig (sft), GKDConfig (gkd) or GOLDConfig (gold) as they
    are; what distillation adds (method, adapter or full fine-tuning, the divergence, resuming) are fields."""

    args: dict[str, Any] = field(default_factory=_train_args)
    method: TrainMethod = TrainMethod.sft
    quantization: Quantization = Quantization.auto  # type: ignore[valid-type]
    # bf16 autocast; null = where the hardware is fast at it (a bf16-capable GPU, or a CPU with AVX512-BF16/AMX:
    # ~2x faster matmuls). A bool, not an Enum: Hydra and YAML read `true` as a boolean, which an Enum refuses
    bf16: bool | None = None
    max_examples: int | None = None
    lora: LoraAdapterConfig = field(default_factory=LoraAdapterConfig)
    gkd_lmbda: float = 0.0  # share of on-policy (student-generated) batches; 0 = off-policy, cheap on CPU
    gkd_beta: float = 0.5  # generalised JSD interpolation
    gkd_temperature: float = 0.9
    gold_ce_weight: float = 0.0  # gold: weight of the student's own cross-entropy on the teacher's answer beside the ULD loss
    save_dtype: SaveDtype = SaveDtype.bfloat16
    resume: bool = True  # continue an interrupted run of the same settings from its newest checkpoint


@dataclass
class GeneratorExportConfig(ExportConfig):
    """``generator.export``. The gate: on ``smoke_questions`` held-out questions, the ONNX export's greedy
    answers against the exported model's on transformers (``min_parity``), the int8 copy's
    (``min_parity_quantized``) and the bf16 merge's against the fp32 base + unmerged adapter's
    (``min_parity_quantized``: bf16 rounds the weights)."""

    smoke_test: bool = True  # answer smoke_questions with every variant and gate on their parity
    smoke_questions: int = 8
    onnx: bool = True  # the ONNX export with a KV cache (export/onnx), the CPU production runtime
    int8: bool = True  # its int8 copy (export/onnx_int8)
    int8_method: Int8Method = Int8Method.weight_only  # a check on 4 test questions (packaged SmolLM2): 3/4 answers kept, dynamic 0/4
    # weight_only: onnxruntime's MatMulNBits accuracy_level (4 = int8 compute: faster on CPUs with int8 dot
    # products, fewer answers equal to fp32); null = the op's default (fp32 compute)
    int8_accuracy_level: int | None = None
    min_parity_quantized: float = 0.5  # int8 greedy answers of a 135M LM drift more than a reranker's scores
    port: int = 8000
    max_model_len: int = 2048
    speculative_tokens: int = 5  # draft tokens per step in the speculative-decoding command (student drafts, teacher verifies)


@dataclass
class RagasConfig:
    """RAGAS LLM-judged metrics (faithfulness, answer relevancy, context precision/recall)."""

    enabled: bool = False  # off by default on CPU: a small local judge is slow and rarely emits ragas' JSON
    teacher: TeacherConfig | None = None  # judge backend; None = the stage's teacher
    embeddings: str = "minilm-l6"  # for answer relevancy
    max_questions: int = 10
    metrics: list[str] = field(default_factory=lambda: ["faithfulness", "answer_relevancy", "context_precision", "context_recall"])


@dataclass
class GeneratorEvaluateConfig(EvaluateConfig):
    """``generator.evaluate``: the held-out questions every system answers (also calibrate's and the monitor's)."""

    batch_size: int = 8
    max_test_questions: int = 200  # the teacher's and the undistilled student's answers to these ship as labels
    latency_items: int = 8  # answers timed one by one per system (p50/p95)
    teacher_latency_items: int = 4  # the teacher is slow on CPU; its quality answers come from the label cache
    max_examples: int = 10  # error-analysis examples kept in results.json
    # export variants evaluated too, where export wrote them: fp32 ONNX is the fastest student runtime measured on an
    # AVX2 CPU (p50 1.53 s vs 2.06 s transformers; the weight-only int8 copy 3.59 s: docs/generator.md)
    exports: list[str] = field(default_factory=lambda: ["student_onnx"])
    ragas: RagasConfig = field(default_factory=RagasConfig)


@dataclass
class EndpointConfig:
    """``pipeline.generator=endpoint``: a served model behind an OpenAI-compatible chat API (``vllm serve`` of
    the export, a hosted API); asked with the stage's prompt and the student's answer budget, greedily."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "ragdistill-generator"  # the served model name (export's serve.sh serves it under this name)
    api_key_env: str = "OPENAI_API_KEY"  # read from the environment, never from config
    timeout: float = 60.0
    max_retries: int = 2


@dataclass
class GeneratorGroupConfig:
    """The ``generator`` group: per verb, plus the prompt, the retrieval and the student's answer budget every verb shares."""

    prompt: PromptConfig = field(default_factory=PromptConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    teach: GeneratorTeachConfig = field(default_factory=GeneratorTeachConfig)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    export: GeneratorExportConfig = field(default_factory=GeneratorExportConfig)
    evaluate: GeneratorEvaluateConfig = field(default_factory=GeneratorEvaluateConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    student_max_new_tokens: int = 24


@dataclass
class GeneratorConfig(StageConfig):
    generator: GeneratorGroupConfig = field(default_factory=GeneratorGroupConfig)
