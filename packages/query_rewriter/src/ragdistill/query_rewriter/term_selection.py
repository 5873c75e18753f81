"""A term-selection student: the rewrite as the follow-up question plus terms picked from the conversation.

QuReTeC (Voskarides et al., SIGIR 2020, "Query Resolution for Conversational Search with Limited
Supervision") resolves a follow-up by tagging the history words that belong in the standalone
query: a BERT token classifier, no decoder. Distilled here, the tags come from the teacher's
rewrites: a history word is positive when the teacher's rewrite contains it and the question does
not ("When did they disband?" -> "When did Zappa and the Mothers of Invention disband?" tags
*zappa*, *mothers*, *invention* in the history). The student's query is the question followed by the
words it tags, which is what first-stage retrieval (bag of words) reads; it is not a fluent sentence,
so exact match / BLEU against human rewrites are low by construction, and it has no expansion task.

Why it exists: an encoder reads the conversation once (one forward pass, no token-by-token
decoding), which is what a 20x speed-up over a 0.5B generative teacher on 2 CPU cores takes; the
generative students (SmolLM2-135M and its pruned cuts, docs/query_rewriter.md) cannot get there.
Any encoder-only checkpoint (``student.model=minilm-l6``) trains as one (``student.is_term_selector``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from bm25s.stopwords import STOPWORDS_EN

from ragdistill.common.models import load_tokenizer
from ragdistill.query_rewriter.prompts import FOLLOW_UP, Example

PIECE = re.compile(r"\w+|[^\w\s]")  # what the encoder reads: words and punctuation
TERM = re.compile(r"(?u)\b\w\w+\b")  # what can be selected: bm25s' token pattern (2+ word characters)
STOPWORDS = frozenset(STOPWORDS_EN) | {"topic"}  # what BM25 ignores, and the format's "Topic:" marker
DEFAULT_THRESHOLD = 0.5  # an untrained or uncalibrated selector's


def terms(text: str) -> set[str]:
    """The lower-cased selectable terms of ``text`` (what BM25 would match on)."""
    return {t.lower() for t in TERM.findall(text)} - STOPWORDS


def context_pieces(ex: Example) -> list[str]:
    """The conversation the student reads (the rewrite input without its follow-up line), as pieces."""
    lines = [ln for ln in ex.source.split("\n") if not ln.startswith(FOLLOW_UP)]
    return [p for ln in lines for p in PIECE.findall(ln)]


def candidate(piece: str, question_terms: set[str]) -> bool:
    t = piece.lower()
    return TERM.fullmatch(piece) is not None and t not in STOPWORDS and t not in question_terms


def tag_targets(ex: Example, target: str) -> list[int]:
    """1 for each context piece the target adds to the question (a term of the target that the
    question lacks), else 0: the distillation labels."""
    q, wanted = terms(ex.question), terms(target)
    return [int(candidate(p, q) and p.lower() in wanted) for p in context_pieces(ex)]


def selected_query(ex: Example, pieces: list[str], picked: list[bool]) -> str:
    """The question followed by the picked terms, each once, in conversation order."""
    q, seen, added = terms(ex.question), set(), []
    for p, on in zip(pieces, picked, strict=True):
        t = p.lower()
        if on and candidate(p, q) and t not in seen:
            seen.add(t)
            added.append(p)
    return " ".join([ex.question, *added])


def encode(tok: Any, examples: list[Example], max_length: int, targets: list[str] | None = None) -> tuple[dict[str, Any], list[list[int | None]]]:
    """Tokenize (question, context pieces) pairs; per example, the context-piece index of each token
    that starts a piece (None elsewhere). With ``targets``, ``labels`` (-100 off those tokens) too."""
    enc = tok([PIECE.findall(e.question) for e in examples], [context_pieces(e) for e in examples],
              is_split_into_words=True, truncation="only_second", max_length=max_length, padding=True, return_tensors="pt")
    starts: list[list[int | None]] = []
    for b in range(len(examples)):
        seq, words, row, prev = enc.sequence_ids(b), enc.word_ids(b), [], None
        for s, w in zip(seq, words, strict=True):
            row.append(w if s == 1 and w is not None and w != prev else None)
            prev = w if s == 1 else None
        starts.append(row)
    if targets is not None:
        labels = []
        for ex, t, row in zip(examples, targets, starts, strict=True):
            tags = tag_targets(ex, t)
            labels.append([-100 if w is None else tags[w] for w in row])
        enc["labels"] = torch.tensor(labels)
    return enc, starts


def tag_rows(tok: Any, pairs: list[tuple[Example, str]], max_length: int) -> list[dict[str, list[int]]]:
    """Unpadded training rows (input ids, mask, token type ids, labels) for (example, target) pairs."""
    rows = []
    for ex, target in pairs:
        enc, _ = encode(tok, [ex], max_length, [target])
        rows.append({k: v[0].tolist() for k, v in enc.items()})
    return rows


def token_classifier(path: str, seed: int) -> Any:
    """``AutoModelForTokenClassification`` with 2 labels; an encoder checkpoint gets a new head drawn from
    ``seed``, so train (which starts from it) and the undistilled ``student_base`` are the same model."""
    from transformers import AutoModelForTokenClassification, set_seed

    set_seed(seed)
    return AutoModelForTokenClassification.from_pretrained(path, num_labels=2, dtype=torch.float32)


class TermSelector:
    """The term-selection student behind the same ``generate(examples)`` as ``StudentRewriter``:
    torch (``AutoModelForTokenClassification``) or ONNX (``ORTModelForTokenClassification``).
    Expansion examples get an empty output (this student does not write reformulations)."""

    def __init__(self, model: Any, tokenizer: Any, max_source_length: int = 256) -> None:
        self.model, self.tok, self.max_source_length = model, tokenizer, max_source_length
        self.seq2seq = False

    @property
    def threshold(self) -> float:
        """P(tag) above which a word is added. train chooses it on the validation records (the teacher
        tags few words, so its probabilities run low) and it lives in the model's config
        (``term_threshold``), which the ONNX export copies: torch and ONNX decide alike."""
        return float(getattr(self.model.config, "term_threshold", DEFAULT_THRESHOLD))

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.model.config.term_threshold = float(value)

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_source_length: int = 256, seed: int = 0) -> TermSelector:
        """A trained selector, or an encoder checkpoint with the fresh head :func:`token_classifier` gives it
        for ``seed`` (the undistilled student: its tags are that untrained head's)."""
        from ragdistill.common.models import resolve_model

        path = resolve_model(name_or_path)
        return cls(token_classifier(path, seed).eval(), load_tokenizer(path), max_source_length)

    @classmethod
    def from_onnx(cls, onnx_dir: str | Path, max_source_length: int = 256) -> TermSelector:
        from optimum.onnxruntime import ORTModelForTokenClassification

        return cls(ORTModelForTokenClassification.from_pretrained(str(onnx_dir)), load_tokenizer(str(onnx_dir)), max_source_length)

    def generate(self, examples: list[Example], batch_size: int = 8) -> list[str]:
        return self.generate_at(examples, [self.threshold], batch_size)[self.threshold]

    def generate_at(self, examples: list[Example], thresholds: list[float], batch_size: int = 8) -> dict[float, list[str]]:
        """The outputs at each threshold, from one forward pass over ``examples``."""
        probs = self.word_probabilities(examples, batch_size)
        pieces = {i: context_pieces(examples[i]) for i in probs}
        out = {}
        for t in thresholds:
            outs = [""] * len(examples)
            for i, p in probs.items():
                outs[i] = selected_query(examples[i], pieces[i], [x > t for x in p])
            out[t] = outs
        return out

    @torch.inference_mode()
    def word_probabilities(self, examples: list[Example], batch_size: int = 8) -> dict[int, list[float]]:
        """For each rewrite example (by index), P(tag) of every context piece, read at its first token
        (0 for pieces cut by ``max_source_length``)."""
        out: dict[int, list[float]] = {}
        was_training = getattr(self.model, "training", False)
        if hasattr(self.model, "eval"):
            self.model.eval()
        idx = [i for i, e in enumerate(examples) if e.task == "rewrite"]
        device = getattr(self.model, "device", torch.device("cpu"))
        for b in range(0, len(idx), batch_size):
            chunk = idx[b : b + batch_size]
            enc, starts = encode(self.tok, [examples[i] for i in chunk], self.max_source_length)
            logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits
            prob = torch.softmax(logits.float(), dim=-1)[..., 1].cpu().tolist()
            for j, (i, row) in enumerate(zip(chunk, starts, strict=True)):
                p = [0.0] * len(context_pieces(examples[i]))
                for t, w in enumerate(row):
                    if w is not None:
                        p[w] = prob[j][t]
                out[i] = p
        if was_training:
            self.model.train()
        return out
