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
from ragdistill.query_rewriter.prompts import Example

PIECE = re.compile(r"\w+|[^\w\s]")  # what the encoder reads: words and punctuation
TERM = re.compile(r"(?u)\b\w\w+\b")  # what can be selected: bm25s' token pattern (2+ word characters)
STOPWORDS = frozenset(STOPWORDS_EN) | {"topic"}  # what BM25 ignores, and the format's "Topic:" marker
FOLLOW_UP = "Follow-up question:"


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


class TermSelector:
    """The term-selection student behind the same ``generate(examples)`` as ``StudentRewriter``:
    torch (``AutoModelForTokenClassification``) or ONNX (``ORTModelForTokenClassification``).
    Expansion examples get an empty output (this student does not write reformulations)."""

    def __init__(self, model: Any, tokenizer: Any, max_source_length: int = 256, threshold: float = 0.5) -> None:
        self.model, self.tok, self.max_source_length, self.threshold = model, tokenizer, max_source_length, threshold
        self.seq2seq = False

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_source_length: int = 256, seed: int = 0) -> TermSelector:
        """A trained selector, or an encoder checkpoint whose new 2-way head is initialised with ``seed``
        (the undistilled student: its tags are the untrained head's)."""
        from transformers import AutoModelForTokenClassification

        from ragdistill.common.models import resolve_model

        path = resolve_model(name_or_path)
        torch.manual_seed(seed)
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2, dtype=torch.float32).eval()
        return cls(model, load_tokenizer(path), max_source_length)

    @classmethod
    def from_onnx(cls, onnx_dir: str | Path, file_names: dict[str, str] | None = None, max_source_length: int = 256) -> TermSelector:
        from optimum.onnxruntime import ORTModelForTokenClassification

        kw = {"file_name": next(iter(file_names.values()))} if file_names else {}
        return cls(ORTModelForTokenClassification.from_pretrained(str(onnx_dir), **kw), load_tokenizer(str(onnx_dir)), max_source_length)

    @torch.inference_mode()
    def generate(self, examples: list[Example], batch_size: int = 8) -> list[str]:
        out = [""] * len(examples)
        was_training = getattr(self.model, "training", False)
        if hasattr(self.model, "eval"):
            self.model.eval()
        idx = [i for i, e in enumerate(examples) if e.task == "rewrite"]
        for b in range(0, len(idx), batch_size):
            chunk = [examples[i] for i in idx[b : b + batch_size]]
            enc, starts = encode(self.tok, chunk, self.max_source_length)
            device = getattr(self.model, "device", torch.device("cpu"))
            logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits
            prob = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
            for j, (ex, row) in enumerate(zip(chunk, starts, strict=True)):
                pieces = context_pieces(ex)
                picked = [False] * len(pieces)
                for t, w in enumerate(row):
                    if w is not None:
                        picked[w] = bool(prob[j, t] > self.threshold)
                out[idx[b + j]] = selected_query(ex, pieces, picked)
        if was_training:
            self.model.train()
        return out
