"""Decoder-only students on onnxruntime: optimum's export with a KV cache, the int8 copy, greedy chat
answers and the parity that gates an export.

One code path for every stage whose student is a causal LM (the query rewriter's SmolLM2, the
generator's): :func:`export_causal_lm` writes ``ORTModelForCausalLM`` graphs with past key values
(each new token costs one step, not a pass over the whole prompt) plus the tokenizer;
:func:`quantize_int8` makes a dynamic int8 copy (per-channel weights: per-tensor loses too much of a
small LM's greedy output) of any optimum export, causal or not; :class:`OnnxChatGenerator` answers
chat conversations greedily, batched and left-padded, the way the torch students do, so
:func:`parity` (the share of identical greedy outputs) compares like with like.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ragdistill.common.errors import RagdistillError
from ragdistill.common.io import atomic_path
from ragdistill.common.models import load_tokenizer

ONNX_SUFFIXES = (".onnx", ".onnx_data")


def onnx_files(onnx_dir: str | Path) -> list[Path]:
    """The graphs of an optimum export (decoder; encoder too for seq2seq)."""
    return sorted(Path(onnx_dir).glob("*.onnx"))


def onnx_size_mb(onnx_dir: str | Path) -> float:
    """Size of the graphs and their external weights: what a deployment ships besides configs."""
    return sum(f.stat().st_size for f in Path(onnx_dir).iterdir() if f.name.endswith(ONNX_SUFFIXES)) / 2**20


def export_causal_lm(model_dir: str | Path, out: str | Path) -> Path:
    """``model_dir`` (a transformers causal LM, any saved dtype) as fp32 ONNX with past key values in ``out``,
    with its tokenizer (end-of-turn token aligned, :func:`~ragdistill.common.models.load_tokenizer`)."""
    from optimum.onnxruntime import ORTModelForCausalLM

    if not (Path(model_dir) / "config.json").is_file():
        raise RagdistillError(f"{model_dir}: not a transformers model folder (no config.json); nothing to export to ONNX")
    with atomic_path(out) as tmp:
        model = ORTModelForCausalLM.from_pretrained(str(model_dir), export=True, use_cache=True)
        model.save_pretrained(tmp)
        load_tokenizer(str(model_dir)).save_pretrained(tmp)
        gen = Path(model_dir) / "generation_config.json"
        if gen.is_file() and not (tmp / gen.name).exists():
            shutil.copy2(gen, tmp / gen.name)
    return Path(out)


def quantize_int8(onnx_dir: str | Path, out: str | Path) -> Path:
    """Dynamic int8 with per-channel weights for every graph of an optimum export; configs and tokenizer copied."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    onnx_dir = Path(onnx_dir)
    graphs = onnx_files(onnx_dir)
    if not graphs:
        raise RagdistillError(f"{onnx_dir}: no .onnx graph to quantize; export the model to ONNX first")
    qcfg = AutoQuantizationConfig.avx2(is_static=False, per_channel=True)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for f in graphs:
            ORTQuantizer.from_pretrained(onnx_dir, file_name=f.name).quantize(save_dir=tmp, quantization_config=qcfg)
            (tmp / f"{f.stem}_quantized.onnx").rename(tmp / f.name)
            data = tmp / f"{f.stem}_quantized.onnx_data"
            if data.exists():
                data.rename(tmp / f"{f.name}_data")
        for f in onnx_dir.iterdir():  # configs and tokenizer
            if f.is_file() and not f.name.endswith(ONNX_SUFFIXES) and not (tmp / f.name).exists():
                shutil.copy2(f, tmp / f.name)
    return Path(out)


def quantize_int8_weights(onnx_dir: str | Path, out: str | Path, block_size: int = 32, accuracy_level: int | None = None) -> Path:
    """Weight-only int8 of a causal LM export: every MatMul weight in 8-bit blocks of ``block_size`` with its
    scale (onnxruntime's ``MatMulNBits``), activations kept in fp32. Dynamic int8 (:func:`quantize_int8`)
    also quantizes the activations, per tensor, which changed most greedy answers of SmolLM2-135M over
    a ~500-token RAG prompt; weights alone keep them. ``accuracy_level`` is the op's attribute (4: int8
    compute, block-quantized activations; None: its default)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    onnx_dir = Path(onnx_dir)
    graphs = onnx_files(onnx_dir)
    if not graphs:
        raise RagdistillError(f"{onnx_dir}: no .onnx graph to quantize; export the model to ONNX first")
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for f in graphs:
            q = MatMulNBitsQuantizer(onnx.load(str(f)), algo_config=DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=8,
                                                                                   accuracy_level=accuracy_level))
            q.process()
            q.model.save_model_to_file(str(tmp / f.name), use_external_data_format=False)
        for f in onnx_dir.iterdir():  # configs and tokenizer
            if f.is_file() and not f.name.endswith(ONNX_SUFFIXES) and not (tmp / f.name).exists():
                shutil.copy2(f, tmp / f.name)
    return Path(out)


def load_causal_lm(onnx_dir: str | Path) -> Any:
    """An ``ORTModelForCausalLM`` (CPU) from an export :func:`export_causal_lm` or :func:`quantize_int8` wrote."""
    from optimum.onnxruntime import ORTModelForCausalLM

    if not onnx_files(onnx_dir):
        raise RagdistillError(f"{onnx_dir}: no ONNX export here (no .onnx file); run the stage's export first")
    return ORTModelForCausalLM.from_pretrained(str(onnx_dir), use_cache=True, provider="CPUExecutionProvider")


def parity(reference: list[str], other: list[str]) -> float:
    """Share of identical greedy outputs: the export gate's measure for generative students."""
    return sum(a == b for a, b in zip(reference, other, strict=True)) / max(len(reference), 1)


class OnnxChatGenerator:
    """Greedy answers to chat conversations from an ONNX causal LM: the chat template with the
    generation prompt, left-padded batches, special tokens skipped, stripped; the same interface
    (``generate(conversations, **overrides)``, ``tokenizer``, ``teacher_id``) as the torch generators."""

    def __init__(self, onnx_dir: str | Path, max_new_tokens: int, batch_size: int = 8) -> None:
        self.model = load_causal_lm(onnx_dir)
        self.tokenizer = load_tokenizer(str(onnx_dir), padding_side="left")
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.model_path = str(onnx_dir)
        self.teacher_id = f"onnx:{Path(onnx_dir).name}:T=0.0:max={self.max_new_tokens}"

    def generate(self, conversations: list[Any], **overrides: Any) -> list[str]:
        import torch

        max_new = int(overrides.get("max_new_tokens", self.max_new_tokens))
        out: list[str] = []
        for i in range(0, len(conversations), self.batch_size):
            prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                       for c in conversations[i : i + self.batch_size]]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=max_new, do_sample=False, num_beams=1,
                                          pad_token_id=self.tokenizer.pad_token_id)
            out.extend(t.strip() for t in self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        return out
