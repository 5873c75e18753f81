"""Filters a teacher answer must pass to become a training example; each one reports its drops.

Run in order: ``format`` (the reply follows the requested text/JSON format and, for JSON, the
schema), ``length`` (answer length within percentile thresholds of the batch), ``grounding`` (the
answer's content tokens appear in the contexts) and, optionally, ``judge`` (an LLM rates the
answer 1-5 through any generation backend). An item dropped by one filter is not seen by the next,
so the counts add up to the total dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragdistill.common.answer_metrics import grounding
from ragdistill.generator.examples import QAExample
from ragdistill.generator.prompts import FormatError, Parsed, format_contexts, parse_reply


@dataclass
class Candidate:
    """A teacher reply to one example, and what the filters made of it."""

    example: QAExample
    reply: str
    parsed: Parsed | None = None
    dropped_by: str | None = None
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.dropped_by is None


@dataclass
class FilterResult:
    name: str
    seen: int
    dropped: int
    settings: dict[str, Any]
    examples: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "dropped": self.dropped, "kept": self.seen - self.dropped, **self.settings, "examples": self.examples}


def _drop(c: Candidate, name: str, reason: str) -> None:
    c.dropped_by, c.reason = name, reason


def _result(name: str, alive: list[Candidate], settings: dict[str, Any], n_examples: int = 3) -> FilterResult:
    gone = [c for c in alive if c.dropped_by == name]
    ex = [{"id": c.example.id, "question": c.example.question, "reply": c.reply[:300], "reason": c.reason} for c in gone[:n_examples]]
    return FilterResult(name, len(alive), len(gone), settings, ex)


class FormatFilter:
    """Parse each reply with the shared prompt settings; malformed replies (bad JSON, schema
    violations, no answer) are dropped and counted, never fatal."""

    name = "format"

    def __init__(self, prompt: Any) -> None:
        self.prompt = prompt

    def __call__(self, alive: list[Candidate]) -> FilterResult:
        for c in alive:
            try:
                c.parsed = parse_reply(c.reply, self.prompt)
            except FormatError as e:
                _drop(c, self.name, str(e))
        fmt = self.prompt.answer_format
        return _result(self.name, alive, {"answer_format": fmt, "rationale": bool(self.prompt.rationale)})


def answer_words(answer: str) -> int:
    return len(answer.split())


class LengthFilter:
    """Drop answers whose word count is outside the [min_pct, max_pct] percentiles of this batch,
    or above ``max_words``: degenerate one-token or rambling answers teach the student noise."""

    name = "length"

    def __init__(self, min_pct: float = 0.0, max_pct: float = 98.0, max_words: int | None = None) -> None:
        if not 0 <= min_pct <= max_pct <= 100:
            raise ValueError(f"length percentiles need 0 <= min_pct ({min_pct}) <= max_pct ({max_pct}) <= 100")
        self.min_pct, self.max_pct, self.max_words = min_pct, max_pct, max_words

    def thresholds(self, lengths: Sequence[int]) -> tuple[float, float]:
        arr = np.asarray(lengths, dtype=float)
        lo, hi = float(np.percentile(arr, self.min_pct)), float(np.percentile(arr, self.max_pct))
        if self.max_words is not None:
            hi = min(hi, float(self.max_words))
        return lo, hi

    def __call__(self, alive: list[Candidate]) -> FilterResult:
        if not alive:
            return _result(self.name, alive, {})
        lengths = [answer_words(c.parsed.answer) for c in alive]
        lo, hi = self.thresholds(lengths)
        for c, n in zip(alive, lengths, strict=True):
            c.scores["answer_words"] = n
            if n < lo or n > hi:
                _drop(c, self.name, f"{n} words outside [{lo:.1f}, {hi:.1f}]")
        pct = np.percentile(lengths, [5, 50, 95]).tolist()
        return _result(self.name, alive, {"min_words": lo, "max_words": hi, "words_p5_p50_p95": pct})


class GroundingFilter:
    """Drop answers whose content tokens are not found in the contexts (a hallucination proxy)."""

    name = "grounding"

    def __init__(self, min_grounding: float = 0.75) -> None:
        self.min_grounding = min_grounding

    def __call__(self, alive: list[Candidate]) -> FilterResult:
        for c in alive:
            g = grounding(c.parsed.answer, c.example.context_texts)
            c.scores["grounding"] = g
            if g < self.min_grounding:
                _drop(c, self.name, f"grounding {g:.2f} < {self.min_grounding}")
        return _result(self.name, alive, {"min_grounding": self.min_grounding})


JUDGE_PROMPT = (
    "Passages:\n{contexts}\n\nQuestion: {question}\nProposed answer: {answer}\n\n"
    "Is the proposed answer correct and supported by the passages? Rate it from 1 (wrong or unsupported) "
    "to 5 (correct and fully supported). Reply with the number only."
)
_DIGIT = re.compile(r"[1-5]")


def judge_messages(c: Candidate, prompt: Any) -> list[dict[str, str]]:
    text = JUDGE_PROMPT.format(contexts=format_contexts(c.example.contexts, prompt), question=c.example.question, answer=c.parsed.answer)
    return [{"role": "user", "content": text}]


def parse_judge_score(reply: str) -> int | None:
    m = _DIGIT.search(reply or "")
    return int(m.group()) if m else None


class JudgeFilter:
    """LLM-as-judge: ``judge(conversations) -> replies`` (any generation backend, cached by the
    caller); a score below ``min_score`` drops the item, a reply without a 1-5 score is dropped
    and counted as ``unparsed``."""

    name = "judge"

    def __init__(self, judge: Callable[[list[list[dict[str, str]]]], list[str | None]], prompt: Any, min_score: int = 3) -> None:
        self.judge, self.prompt, self.min_score = judge, prompt, min_score

    def __call__(self, alive: list[Candidate]) -> FilterResult:
        replies = self.judge([judge_messages(c, self.prompt) for c in alive]) if alive else []
        unparsed = 0
        for c, r in zip(alive, replies, strict=True):
            s = parse_judge_score(r or "")
            if s is None:
                unparsed += 1
                _drop(c, self.name, f"judge reply has no 1-5 score: {str(r)[:80]!r}")
                continue
            c.scores["judge"] = s
            if s < self.min_score:
                _drop(c, self.name, f"judge score {s} < {self.min_score}")
        return _result(self.name, alive, {"min_score": self.min_score, "unparsed": unparsed})


def run_filters(candidates: list[Candidate], filters: Sequence[Callable[[list[Candidate]], FilterResult]]) -> dict[str, Any]:
    """Apply ``filters`` in order to the candidates still alive; returns the drop report."""
    report: dict[str, Any] = {"total": len(candidates), "filters": {}}
    for f in filters:
        alive = [c for c in candidates if c.kept]
        res = f(alive)
        report["filters"][res.name] = res.as_dict()
    report["kept"] = sum(c.kept for c in candidates)
    report["dropped"] = report["total"] - report["kept"]
    return report
