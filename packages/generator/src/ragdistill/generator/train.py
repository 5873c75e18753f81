"""generator train: distill the teacher into the student with LoRA (QLoRA 4-bit on CUDA), then merge.

Two methods, one trainer each (TRL):

- ``sft`` (default): sequence-level distillation. TRL's ``SFTTrainer`` fine-tunes a PEFT LoRA
  adapter on the teacher's filtered answers (``teach/train.jsonl``), with the loss on the
  completion (the assistant turn) only. Works across tokenizers.
- ``gkd``: logit distillation with ``trl.experimental.gkd.GKDTrainer`` (generalised JSD between the
  teacher's and the student's next-token distributions). Needs one shared tokenizer; a mismatch is
  a :class:`RagdistillError` naming both tokenizers.

``generator.train.args`` go to TRL's ``SFTConfig`` / ``GKDConfig`` as they are. Writes
``<work_dir>/generator/train/``: ``adapter/`` (the unmerged LoRA adapter, for Multi-LoRA serving)
and ``student/`` (the adapter merged into the unquantised base: a plain HF folder); which of LoRA /
QLoRA ran, the steps and losses go into ``train.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ragdistill.common.config import apply_run_settings
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, iter_jsonl
from ragdistill.common.logging import get_logger
from ragdistill.common.models import resolve_model
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.results import TrainResult
from ragdistill.common.training import build_training_args
from ragdistill.generator.config import TrainMethod
from ragdistill.generator.models import check_same_tokenizer, load_tokenizer

log = get_logger(__name__)
STAGE = "generator"


def read_chat_jsonl(path: str | Path, max_examples: int | None = None) -> list[dict[str, Any]]:
    """Chat-format training examples, checked line by line (each needs a final assistant turn)."""
    path = Path(path)
    if not path.is_file():
        raise RagdistillError(f"{path}: no training set; run `ragdistill generator teach` first (it writes this file)")
    rows = []
    for lineno, obj in iter_jsonl(path):
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or len(msgs) < 2 or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in msgs):
            raise RagdistillError(f"{path}:{lineno}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}} with at least a user and an assistant turn")
        if msgs[-1]["role"] != "assistant":
            raise RagdistillError(f"{path}:{lineno}: the last message must be the assistant's answer (role 'assistant'), got {msgs[-1]['role']!r}")
        rows.append({"messages": msgs})
        if max_examples and len(rows) >= max_examples:
            break
    if not rows:
        raise RagdistillError(f"{path}: the training set is empty (every teacher answer was filtered out?); see the filter report in teach.json beside it")
    return rows


def to_prompt_completion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversational prompt/completion pairs: TRL then computes the loss on the completion only."""
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


def resolve_quantization(setting: Any) -> str:
    """``qlora-4bit`` or ``lora``: ``auto`` is QLoRA when a CUDA GPU is present."""
    import torch

    name = getattr(setting, "value", setting)
    if name == "auto":
        return "qlora-4bit" if torch.cuda.is_available() else "lora"
    return "qlora-4bit" if name == "4bit" else "lora"


def load_student(path: str, quantization: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if quantization == "qlora-4bit":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, device_map="auto" if torch.cuda.is_available() else "cpu")
        return prepare_model_for_kbit_training(model)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def use_bf16(setting: bool | None) -> bool:
    """bf16 mixed precision: as set, or (``None``) where the hardware has fast bf16."""
    import torch

    if setting is not None:
        return bool(setting)
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lora_config(cfg: Any) -> Any:
    from peft import LoraConfig

    lo = cfg.generator.train.lora
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=list(lo.target_modules), task_type="CAUSAL_LM")


def _fixed_args(cfg: Any, out: Path) -> dict[str, Any]:
    """What the stage decides itself (``generator.train.args`` may not set these)."""
    import torch

    return dict(output_dir=str(out / "checkpoints"), report_to=list(cfg.run.report_to), seed=int(cfg.run.seed),
                bf16=use_bf16(cfg.generator.train.bf16), use_cpu=not torch.cuda.is_available())


def train(cfg: Any) -> TrainResult:
    """LoRA on the teacher's answers (sft) or logits (gkd), then the adapter merged into ``train/student``."""
    from datasets import Dataset

    apply_run_settings(cfg)
    t = cfg.generator.train
    out, merged = stage_dir(cfg, STAGE, "train"), student_dir(cfg, STAGE)
    student_path = resolve_model(cfg.student.model)
    method = TrainMethod(t.method)
    if method is TrainMethod.gkd:  # fail before loading anything
        check_same_tokenizer(cfg.teacher.model, cfg.student.model)
    rows = read_chat_jsonl(stage_dir(cfg, STAGE, "teach") / "train.jsonl", t.max_examples)
    quant = resolve_quantization(t.quantization)
    where = "generator.train.args"
    if method is TrainMethod.sft:
        from trl import SFTConfig

        args = build_training_args(SFTConfig, t.args, where, **_fixed_args(cfg, out), completion_only_loss=True)
    else:
        from trl.experimental.gkd import GKDConfig

        args = build_training_args(GKDConfig, t.args, where, **_fixed_args(cfg, out), lmbda=float(t.gkd_lmbda), beta=float(t.gkd_beta),
                                   temperature=float(t.gkd_temperature), max_new_tokens=int(cfg.generator.student_max_new_tokens),
                                   teacher_model_init_kwargs={"dtype": "float32"})
    log.info("generator train: method=%s, %s on %s (%d examples)", method.value, "QLoRA (4-bit NF4 base)" if quant == "qlora-4bit" else "LoRA (fp32 base, no quantisation)", student_path, len(rows))
    print(f"[generator train] method={method.value}, adapter training: {quant} ({'CUDA' if quant == 'qlora-4bit' else 'CPU: plain LoRA'}), {len(rows)} examples", flush=True)
    tok = load_tokenizer(student_path)
    model = load_student(student_path, quant)
    start = time.perf_counter()
    if method is TrainMethod.sft:
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(to_prompt_completion(rows)),
                             processing_class=tok, peft_config=lora_config(cfg))
    else:
        from trl.experimental.gkd import GKDTrainer

        trainer = GKDTrainer(model=model, teacher_model=resolve_model(cfg.teacher.model), args=args,
                             train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=lora_config(cfg))
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    with atomic_path(out / "adapter") as tmp:
        trainer.model.save_pretrained(tmp)
        tok.save_pretrained(tmp, legacy_format=False)  # fast tokenizer only: the GGUF-converted vocab file is the whole GGUF
    merge_adapter(student_path, out / "adapter", merged)
    info = {
        "method": method.value, "adapter_training": quant, "bf16": bool(args.bf16), "student": cfg.student.model, "student_path": student_path,
        "teacher": cfg.teacher.model, "examples": len(rows), "steps": int(result.global_step), "seconds": seconds,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None, "losses": losses,
        "adapter_dir": str(out / "adapter"), "student_dir": str(merged),
    }
    print(f"[generator train] {info['steps']} steps in {seconds:.0f}s, loss {info['first_loss']} -> {info['last_loss']}; "
          f"adapter {out / 'adapter'}, merged student {merged}", flush=True)
    return TrainResult(STAGE, n_items=len(rows), train_steps=int(result.global_step), student=str(merged), details=info)


def merge_adapter(base_path: str, adapter_dir: str | Path, merged_dir: str | Path) -> Path:
    """Merge a LoRA adapter into the unquantised (fp32) base and save a plain HF folder, with the
    tokenizer and generation config, so it loads without PEFT (and in vLLM)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GenerationConfig

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tok = load_tokenizer(base_path)
    with atomic_path(merged_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp, legacy_format=False)  # fast tokenizer only: the GGUF-converted vocab file is the whole GGUF
        try:
            GenerationConfig.from_pretrained(base_path).save_pretrained(tmp)
        except OSError:
            pass
    return Path(merged_dir)
