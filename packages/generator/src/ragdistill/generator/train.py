"""generator train: distill the teacher into the student (LoRA, QLoRA on CUDA, or full fine-tuning), then save it.

Three methods, one TRL trainer each:

- ``sft`` (default): sequence-level distillation. TRL's ``SFTTrainer`` on the teacher's filtered answers
  (``teach/train.jsonl``), the loss on the completion (the assistant turn) only. Works across tokenizers.
- ``gkd``: logit distillation with ``trl.experimental.gkd.GKDTrainer`` (generalised JSD between the
  teacher's and the student's next-token distributions). Needs one shared tokenizer; a mismatch is
  a :class:`RagdistillError` naming both tokenizers.
- ``gold``: cross-tokenizer logit distillation with ``trl.experimental.gold.GOLDTrainer`` (Universal
  Logit Distillation: the teacher re-reads each answer with its own tokenizer and the two sequences'
  distributions are aligned token span by span), so the Qwen teacher's distributions reach the
  SmolLM2 student although their vocabularies differ. Off-policy by default (``gkd_lmbda=0``: the
  teacher's answers, no student sampling), so it costs one teacher forward per example on top of SFT.

``generator.train.lora.enabled`` picks a PEFT LoRA adapter (merged afterwards) or full fine-tuning of
every weight (``generator.train.args.learning_rate`` should then be ~10x lower). ``generator.train.args``
go to TRL's ``SFTConfig`` / ``GKDConfig`` / ``GOLDConfig`` as they are. The trainer checkpoints every
``args.save_steps`` into ``train/checkpoints`` (with a fingerprint of the run's settings) and a rerun of
the same run resumes from the newest checkpoint (``generator.train.resume``); a finished run removes them.

Writes ``<work_dir>/generator/train/``: ``student/`` (the adapter merged into the base, or the fully
fine-tuned model: a plain HF folder in ``save_dtype``, bf16 by default) and, with LoRA, ``adapter/`` (for
Multi-LoRA serving); the method, steps and losses go into ``train.json``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ragdistill.common.config import apply_run_settings
from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path, iter_jsonl, read_json, write_json
from ragdistill.common.logging import get_logger
from ragdistill.common.models import resolve_model
from ragdistill.common.paths import stage_dir, student_dir
from ragdistill.common.results import TrainResult
from ragdistill.common.training import build_training_args
from ragdistill.generator.config import SaveDtype, TrainMethod
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


def fingerprint(cfg: Any, n_rows: int) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed: the training settings, the student, teacher and data size."""
    from omegaconf import OmegaConf

    t = OmegaConf.to_container(cfg.generator.train, resolve=True, enum_to_str=True)
    t.pop("resume", None)
    return {"train": t, "student": str(cfg.student.model), "teacher": str(cfg.teacher.model), "examples": n_rows, "seed": int(cfg.run.seed)}


def resume_checkpoint(ckpt_dir: Path, want: dict[str, Any], resume: bool) -> str | None:
    """The newest checkpoint of an interrupted run of these same settings, else None; checkpoints of other
    settings are an error (resuming them would train a different run), unless ``resume`` is off."""
    if not ckpt_dir.is_dir():
        return None
    # complete checkpoints only: the trainer writes trainer_state.json last, so a run killed mid-save leaves none
    done = [c for c in ckpt_dir.glob("checkpoint-*") if c.name.split("-")[-1].isdigit() and (c / "trainer_state.json").is_file()]
    if not done:
        return None
    last = str(max(done, key=lambda c: int(c.name.split("-")[-1])))
    if not resume:
        shutil.rmtree(ckpt_dir)
        return None
    have = read_json(ckpt_dir / "run.json") if (ckpt_dir / "run.json").is_file() else None
    if have != want:
        raise RagdistillError(f"{ckpt_dir}: checkpoints of an interrupted run with other settings than this one; set "
                              "generator.train.resume=false to discard them and start afresh (or rerun with the settings of "
                              f"{ckpt_dir / 'run.json'})")
    return last


def _trainer(method: TrainMethod, cfg: Any, model: Any, tok: Any, rows: list[dict[str, Any]], out: Path, peft: Any) -> Any:
    """The TRL trainer of ``method`` with its arguments (``generator.train.args`` + what the method adds)."""
    from datasets import Dataset

    t, where = cfg.generator.train, "generator.train.args"
    if method is TrainMethod.sft:
        from trl import SFTConfig, SFTTrainer

        args = build_training_args(SFTConfig, t.args, where, **_fixed_args(cfg, out), completion_only_loss=True)
        return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(to_prompt_completion(rows)), processing_class=tok,
                          peft_config=peft)
    teacher = resolve_model(cfg.teacher.model)
    if method is TrainMethod.gkd:
        from trl.experimental.gkd import GKDConfig, GKDTrainer

        args = build_training_args(GKDConfig, t.args, where, **_fixed_args(cfg, out), lmbda=float(t.gkd_lmbda), beta=float(t.gkd_beta),
                                   temperature=float(t.gkd_temperature), max_new_tokens=int(cfg.generator.student_max_new_tokens),
                                   teacher_model_init_kwargs={"dtype": "float32"})
        return GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                          peft_config=peft)
    from trl.experimental.gold import GOLDConfig, GOLDTrainer

    args = build_training_args(GOLDConfig, t.args, where, **_fixed_args(cfg, out), lmbda=float(t.gkd_lmbda), beta=float(t.gkd_beta),
                               temperature=float(t.gkd_temperature), max_completion_length=int(cfg.generator.student_max_new_tokens),
                               use_uld_loss=True, teacher_tokenizer_name_or_path=teacher, uld_crossentropy_weight=float(t.gold_ce_weight),
                               teacher_model_init_kwargs={"dtype": "float32"})
    return GOLDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                       peft_config=peft)


def train(cfg: Any) -> TrainResult:
    """LoRA or full fine-tuning on the teacher's answers (sft) or distributions (gkd, gold); the student saved to ``train/student``."""
    apply_run_settings(cfg)
    t = cfg.generator.train
    out, merged = stage_dir(cfg, STAGE, "train"), student_dir(cfg, STAGE)
    student_path = resolve_model(cfg.student.model)
    method = TrainMethod(t.method)
    if method is TrainMethod.gkd:  # fail before loading anything
        check_same_tokenizer(cfg.teacher.model, cfg.student.model)
    if method is not TrainMethod.sft and cfg.teacher.backend != "causal_lm":
        raise RagdistillError(f"generator.train.method={method.value} reads the teacher's logits, so the teacher must be a local "
                              f"model (teacher.backend=causal_lm), not teacher.backend={cfg.teacher.backend}; use method=sft for it")
    rows = read_chat_jsonl(stage_dir(cfg, STAGE, "teach") / "train.jsonl", t.max_examples)
    lora = bool(t.lora.enabled)
    quant = resolve_quantization(t.quantization) if lora else "full"
    ckpts = out / "checkpoints"
    want = fingerprint(cfg, len(rows))
    last = resume_checkpoint(ckpts, want, bool(t.resume))
    how = {"qlora-4bit": "QLoRA (4-bit NF4 base)", "lora": "LoRA (fp32 base, no quantisation)", "full": "full fine-tuning (every weight)"}[quant]
    log.info("method=%s, %s on %s (%d examples)%s", method.value, how, student_path, len(rows), f", resuming from {last}" if last else "")
    tok = load_tokenizer(student_path)
    model = load_student(student_path, quant if lora else "lora")
    trainer = _trainer(method, cfg, model, tok, rows, out, lora_config(cfg) if lora else None)
    ckpts.mkdir(parents=True, exist_ok=True)
    write_json(ckpts / "run.json", want)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    dtype = SaveDtype(t.save_dtype).value
    if lora:
        with atomic_path(out / "adapter") as tmp:
            trainer.model.save_pretrained(tmp)
            tok.save_pretrained(tmp, legacy_format=False)  # fast tokenizer only: the GGUF-converted vocab file is the whole GGUF
        merge_adapter(student_path, out / "adapter", merged, dtype)
    else:
        save_student(trainer.model, student_path, merged, dtype)
        if (out / "adapter").exists():  # an adapter of an earlier LoRA run would not match this student
            shutil.rmtree(out / "adapter")
    shutil.rmtree(ckpts, ignore_errors=True)  # the run finished: its student is saved, the checkpoints were for a crash
    info = {
        "method": method.value, "adapter_training": quant, "lora": lora, "bf16": bool(trainer.args.bf16), "save_dtype": dtype,
        "student": cfg.student.model, "student_path": student_path, "teacher": cfg.teacher.model, "examples": len(rows),
        "steps": int(result.global_step), "seconds": seconds, "resumed_from": last,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None, "losses": losses,
        "adapter_dir": str(out / "adapter") if lora else None, "student_dir": str(merged),
    }
    log.info("%d steps in %.0fs, loss %s -> %s; %sstudent %s (%s)", info["steps"], seconds, info["first_loss"], info["last_loss"],
             f"adapter {out / 'adapter'}, merged " if lora else "", merged, dtype)
    return TrainResult(STAGE, n_items=len(rows), train_steps=int(result.global_step), student=str(merged), details=info)


def save_student(model: Any, base_path: str, dest: str | Path, dtype: str) -> Path:
    """A fully fine-tuned student saved in ``dtype`` with the base's tokenizer and generation config."""
    import torch
    from transformers import GenerationConfig

    tok = load_tokenizer(base_path)
    with atomic_path(dest) as tmp:
        model.to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp, legacy_format=False)
        try:
            GenerationConfig.from_pretrained(base_path).save_pretrained(tmp)
        except OSError:
            pass
    return Path(dest)


def merge_adapter(base_path: str, adapter_dir: str | Path, merged_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Merge a LoRA adapter into the unquantised (fp32) base and save a plain HF folder in ``dtype`` (bf16
    halves the fp32 size), with the tokenizer and generation config, so it loads without PEFT (and in vLLM)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, GenerationConfig

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().to(getattr(torch, dtype))
    tok = load_tokenizer(base_path)
    with atomic_path(merged_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp, legacy_format=False)  # fast tokenizer only: the GGUF-converted vocab file is the whole GGUF
        try:
            GenerationConfig.from_pretrained(base_path).save_pretrained(tmp)
        except OSError:
            pass
    return Path(merged_dir)
