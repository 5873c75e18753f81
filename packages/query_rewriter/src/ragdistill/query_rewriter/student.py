"""The student as a rewriter: one wrapper for a decoder-only LM, a T5-family seq2seq model and
their ONNX exports, so train (checkpoint choice), export (parity) and evaluate run one code path;
an encoder-only student is a ``term_selection.TermSelector`` behind the same ``generate``
(``load_student`` / ``load_student_onnx`` pick the class).

A decoder-only student reads :func:`prompts.student_messages` through its chat template and
continues after the assistant tag; a seq2seq student reads :func:`prompts.seq2seq_input`. Decoding
is greedy, with a per-task token budget (rewrites are short, expansions longer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ragdistill.common.models import load_tokenizer, resolve_model
from ragdistill.query_rewriter.prompts import Example, seq2seq_input, student_messages

MAX_NEW_TOKENS = {"rewrite": 32, "expansion": 64}


def is_seq2seq(model_path: str) -> bool:
    """True for encoder-decoder checkpoints (T5, BART...): they train with Seq2SeqTrainer."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(model_path), "is_encoder_decoder", False))


GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def is_term_selector(model_path: str | Path) -> bool:
    """True for an encoder-only checkpoint (``BertModel``, ``BertForMaskedLM``, ``...ForTokenClassification``):
    it cannot write text, so it trains and runs as a term selector (term_selection.py). Generative
    checkpoints (a causal LM head, an encoder-decoder) are not."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_path))
    archs = list(getattr(config, "architectures", None) or [])
    return (not getattr(config, "is_encoder_decoder", False) and bool(archs)
            and not any(a.endswith(GENERATIVE_HEADS) for a in archs))


def load_student(name_or_path: str, max_source_length: int = 256, seed: int = 0) -> Any:
    """A torch student (``StudentRewriter`` or ``TermSelector``) for a trained folder, a short name or a hub id.
    ``seed`` initialises an untrained term selector's head (pass ``run.seed``: the head training starts from)."""
    path = resolve_model(name_or_path)
    if is_term_selector(path):
        from ragdistill.query_rewriter.term_selection import TermSelector

        return TermSelector.from_pretrained(path, max_source_length, seed)
    return StudentRewriter.from_pretrained(path, max_source_length)


def load_student_onnx(onnx_dir: str | Path, max_source_length: int = 256) -> Any:
    """The ONNX export of either kind of student (its folder keeps the model's config)."""
    if is_term_selector(onnx_dir):
        from ragdistill.query_rewriter.term_selection import TermSelector

        return TermSelector.from_onnx(onnx_dir, max_source_length=max_source_length)
    return StudentRewriter.from_onnx(onnx_dir, max_source_length=max_source_length)


def exports_with_cache(model_dir: str | Path) -> bool:
    """Whether optimum can export the student with past key values: every causal LM and T5/BART, but
    not the BERT decoder of an ``EncoderDecoderModel`` (optimum's ONNX config for BERT has no past). The same rule tells how an export was written (its
    folder keeps the model's config)."""
    from optimum.exporters.onnx import model_configs  # noqa: F401  (registers the ONNX configs with TasksManager)
    from optimum.exporters.onnx.base import OnnxConfigWithPast
    from optimum.exporters.tasks import TasksManager
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "encoder-decoder":
        return True
    ctor = TasksManager.get_exporter_config_constructor(exporter="onnx", task="feature-extraction",
                                                        model_type=config.decoder.model_type, library_name="transformers")
    return issubclass(ctor.func, OnnxConfigWithPast)


def source_text(tok: Any, ex: Example, seq2seq: bool) -> str:
    """What the student is conditioned on, as text (special tokens included for causal LMs)."""
    if seq2seq:
        return seq2seq_input(ex)
    if tok.chat_template:
        return tok.apply_chat_template(student_messages(ex), tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in student_messages(ex)) + "\n\nAnswer: "


class StudentRewriter:
    """Greedy generation for examples of both tasks, from a torch model or an ORT model."""

    def __init__(self, model: Any, tokenizer: Any, seq2seq: bool, max_source_length: int = 256) -> None:
        self.model, self.tok, self.seq2seq, self.max_source_length = model, tokenizer, seq2seq, max_source_length

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_source_length: int = 256) -> StudentRewriter:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        path = resolve_model(name_or_path)
        s2s = is_seq2seq(path)
        auto = AutoModelForSeq2SeqLM if s2s else AutoModelForCausalLM
        model = auto.from_pretrained(path, dtype=torch.float32).eval()
        return cls(model, load_tokenizer(path), s2s, max_source_length)

    @classmethod
    def from_onnx(cls, onnx_dir: str | Path, file_names: dict[str, str] | None = None, max_source_length: int = 256) -> StudentRewriter:
        """An optimum ONNX export (``ORTModelForSeq2SeqLM`` or ``ORTModelForCausalLM``)."""
        from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

        path = str(onnx_dir)
        s2s = is_seq2seq(path)
        kw = dict(file_names or {})
        if s2s:  # a bert2bert student's decoder was exported without past key values
            kw.setdefault("use_cache", exports_with_cache(path))
        model = (ORTModelForSeq2SeqLM if s2s else ORTModelForCausalLM).from_pretrained(path, **kw)
        return cls(model, load_tokenizer(path), s2s, max_source_length)

    @torch.inference_mode()
    def generate(self, examples: list[Example], batch_size: int = 8) -> list[str]:
        """One output per example (raw text, stripped), in order; tasks are batched separately."""
        out: list[str] = [""] * len(examples)
        if hasattr(self.model, "eval"):
            was_training = getattr(self.model, "training", False)
            self.model.eval()
        else:
            was_training = False
        for task in MAX_NEW_TOKENS:
            idx = [i for i, e in enumerate(examples) if e.task == task]
            for b in range(0, len(idx), batch_size):
                chunk = idx[b : b + batch_size]
                texts = [source_text(self.tok, examples[i], self.seq2seq) for i in chunk]
                for i, t in zip(chunk, self._generate(texts, MAX_NEW_TOKENS[task]), strict=True):
                    out[i] = t
        if was_training:
            self.model.train()
        return out

    def _generate(self, texts: list[str], max_new_tokens: int) -> list[str]:
        self.tok.padding_side = "right" if self.seq2seq else "left"
        enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_source_length,
                       add_special_tokens=self.seq2seq)
        device = getattr(self.model, "device", torch.device("cpu"))
        enc = {k: v.to(device) for k, v in enc.items()}
        ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=self.tok.pad_token_id)
        if not self.seq2seq:
            ids = ids[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in self.tok.batch_decode(ids, skip_special_tokens=True)]
