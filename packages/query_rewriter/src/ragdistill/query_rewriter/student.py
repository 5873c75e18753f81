"""The student as a rewriter: one wrapper for a decoder-only LM, a T5-family seq2seq model and
their ONNX exports, so train (checkpoint choice), export (parity) and evaluate run one code path;
an encoder-only student is a ``term_selection.TermSelector`` behind the same ``generate``
(``load_student`` / ``load_student_onnx`` pick the class).

A decoder-only student reads :func:`prompts.student_messages` through its chat template and
continues after the assistant tag; a seq2seq student reads :func:`prompts.seq2seq_input`. Decoding
is greedy, with a per-task token budget (rewrites are short, expansions longer).

:func:`load_system` loads what a verb or the pipeline names (``student_base``, ``student``,
``student_onnx``, ``student_onnx_int8``) from where train and export keep it; :class:`ScoredRewriter`
is the distilled decoder-only student with its confidence (routing). Importing this module
registers the students' surgery specs (``bert2bert:``, ``pruned:``; surgery.py) with ``resolve_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import ragdistill.query_rewriter.surgery  # noqa: F401  (registers bert2bert: and pruned: with resolve_model)
from ragdistill.common.errors import RagdistillError
from ragdistill.common.models import load_tokenizer, resolve_model
from ragdistill.common.paths import export_dir, stage_dir, student_dir
from ragdistill.query_rewriter.prompts import Example, seq2seq_input, student_messages

STAGE = "query_rewriter"

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
        if s2s or kw:
            model = (ORTModelForSeq2SeqLM if s2s else ORTModelForCausalLM).from_pretrained(path, **kw)
        else:  # the decoder-only export common's onnx_causal_lm wrote (the generator loads it the same way)
            from ragdistill.common.onnx_causal_lm import load_causal_lm

            model = load_causal_lm(path)
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
        from tqdm.auto import tqdm

        # a progress bar once there is more than one batch: a full held-out split takes minutes on CPU
        with tqdm(total=len(examples), desc="student rewrites", unit="input", disable=len(examples) <= batch_size, leave=False) as bar:
            for task in MAX_NEW_TOKENS:
                idx = [i for i, e in enumerate(examples) if e.task == task]
                for b in range(0, len(idx), batch_size):
                    chunk = idx[b : b + batch_size]
                    texts = [source_text(self.tok, examples[i], self.seq2seq) for i in chunk]
                    for i, t in zip(chunk, self._generate(texts, MAX_NEW_TOKENS[task]), strict=True):
                        out[i] = t
                    bar.update(len(chunk))
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


def int8_dir(cfg: Any) -> Path:
    """Where export writes the int8 copy: beside the fp32 export (``export/model_int8``)."""
    return stage_dir(cfg, STAGE, "export") / "model_int8"


def artifact(path: Path, verb: str) -> Path:
    """The folder a verb writes, or an error naming that verb (a bare path error does not say how to make it)."""
    if not (path / "config.json").is_file():
        raise RagdistillError(f"{path}: no query_rewriter {verb} output; run `ragdistill query_rewriter {verb}` first (same paths.work_dir)")
    return path


def system_path(cfg: Any, system: str) -> Path | None:
    """The folder of a trained or exported system (None for ``student_base``: a packaged name or hub id)."""
    if system == "student":
        return student_dir(cfg, STAGE)
    if system == "student_onnx":
        return export_dir(cfg, STAGE)
    if system == "student_onnx_int8":
        return int8_dir(cfg)
    if system == "student_base":
        return None
    raise RagdistillError(f"query_rewriter has no student system {system!r}; use student_base, student, student_onnx or student_onnx_int8")


def load_system(cfg: Any, system: str) -> tuple[Any, str]:
    """(a rewriter with ``generate(examples, batch_size)``, its folder) for ``system``; a missing
    train or export output is an error naming the command that makes it."""
    msl = int(cfg.query_rewriter.train.max_source_length)
    path = system_path(cfg, system)
    if path is None:
        return load_student(cfg.student.model, msl, int(cfg.run.seed)), resolve_model(cfg.student.model)
    path = artifact(path, "train" if system == "student" else "export")
    if system == "student":
        return load_student(str(path), msl), str(path)
    return load_student_onnx(path, msl), str(path)


class ScoredRewriter:
    """The distilled (decoder-only) student rewriting greedily, with log p(rewrite | prompt) per rewrite:
    its mean token log-probability, teacher-forced on the rewrite it generated (``routing.signal=sequence_logprob``)."""

    def __init__(self, cfg: Any) -> None:
        path = artifact(student_dir(cfg, STAGE), "train")
        if is_term_selector(path):
            raise RagdistillError(f"{path}: routing scores a generative student (log p(rewrite | prompt)); a term-selection "
                                  "student has no such score and is not supported by calibrate/routed yet")
        self.rewriter = StudentRewriter.from_pretrained(str(path), int(cfg.query_rewriter.train.max_source_length))
        if self.rewriter.seq2seq:
            raise RagdistillError(f"{path}: routing scores a decoder-only student (log p(rewrite | prompt)); a seq2seq "
                                  "student (T5 family) is not supported by calibrate/routed yet")
        self.batch_size = int(cfg.query_rewriter.evaluate.batch_size)
        self.model_path = str(path)

    def outputs(self, examples: list[Example]) -> tuple[list[str], list[float]]:
        """Raw greedy outputs and their mean token log-probabilities."""
        from ragdistill.common.signals import sequence_logprob

        outs = self.rewriter.generate(examples, batch_size=self.batch_size)
        prompts = [source_text(self.rewriter.tok, e, False) for e in examples]
        return outs, sequence_logprob(self.rewriter.model, self.rewriter.tok, prompts, outs, mean=True, batch_size=self.batch_size)
