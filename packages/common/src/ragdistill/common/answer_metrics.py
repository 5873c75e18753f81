"""Answer quality without an LLM judge: SQuAD exact match and token F1, ROUGE-L, and grounding
(the share of the answer's content tokens found in the contexts, a cheap faithfulness proxy).

Shared by the generator's evaluate, the e2e harness and routing/monitoring, so an answer is
scored the same way everywhere.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_STOP = {"a", "an", "the", "of", "in", "on", "and", "or", "to", "is", "was", "are", "were", "be", "by", "for", "with", "as", "at", "it", "its", "that", "this"}


def normalize_answer(s: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references)) if references else 0.0


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Max over references of the SQuAD token-overlap F1."""
    best = 0.0
    pred = normalize_answer(prediction).split()
    for ref in references:
        gold = normalize_answer(ref).split()
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        if same:
            p, r = same / len(pred), same / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


@functools.cache
def _rouge_l_scorer() -> Any:
    """One scorer per process: building one logs absl's "Using default tokenizer." every time."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    scorer = _rouge_l_scorer()
    return max((scorer.score(r, prediction)["rougeL"].fmeasure for r in references), default=0.0)


def grounding(answer: str, contexts: Sequence[str]) -> float:
    """Share of the answer's content tokens that appear in the contexts (1.0 = fully supported)."""
    tokens = [t for t in normalize_answer(answer).split() if t not in _STOP]
    if not tokens:
        return 0.0
    ctx = set(normalize_answer(" ".join(contexts)).split())
    return sum(t in ctx for t in tokens) / len(tokens)
