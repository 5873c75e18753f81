"""Teacher outputs -> training targets: clean, parse, and reject what would teach the wrong thing.

Each output is cleaned (surrounding quotes, a leading ``Rewrite:``-style label) and then checked in
order; the first failing check is its rejection reason, and the counts per reason are reported:

* ``empty``: nothing left after cleaning;
* ``malformed``: a rewrite spread over several lines or holding the separator; an expansion whose
  separator count gives fewer than ``min_parts`` or more than ``max_parts`` reformulations, or an
  empty part;
* ``echoed``: the output repeats its input instead of rewriting it: a rewrite equal to one of the
  earlier turns (title, section, a previous question or answer: what the zero-shot teacher does),
  an expansion reformulation equal to the query;
* ``too_long``: more than ``max_words`` words (per reformulation for expansions) or more than
  ``max_ratio`` times the words of the input question.

A rewrite identical to the follow-up question is kept (many questions are already standalone: the
human rewrite keeps them too) and counted as ``unchanged``, so the report shows how often it happens.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ragdistill.query_rewriter.prompts import SEPARATOR, Example

REASONS = ("empty", "malformed", "echoed", "too_long")
_LABEL = re.compile(
    r"^(?:standalone (?:search )?(?:question|query)|rewritten (?:question|query)|rewrite|search quer(?:y|ies)|quer(?:y|ies))\s*:\s*",
    re.I,
)


def normalize(text: str) -> str:
    """Lower-case, punctuation-free, single-spaced: what 'the same text' means for echo and EM."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def clean_output(text: str) -> str:
    """Strip whitespace, a leading ``Rewrite:``/``Standalone question:`` label and wrapping quotes."""
    t = (text or "").strip()
    t = _LABEL.sub("", t, count=1).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        t = t[1:-1].strip()
    return t


def parse_expansions(text: str, separator: str = SEPARATOR) -> list[str]:
    """Split a one-line expansion output on the separator (tolerant of spacing around ``|||``);
    parts are cleaned, and an empty part stays as ``""`` so malformed outputs are visible."""
    sep = separator.strip()
    return [clean_output(p) for p in clean_output(text).split(sep)] if text and text.strip() else []


@dataclass
class FilterConfig:
    min_parts: int = 3
    max_parts: int = 5
    max_words: int = 40
    max_ratio: float = 4.0
    separator: str = SEPARATOR


@dataclass
class FilterReport:
    """How many outputs each check rejected, and how many were kept (per task)."""

    kept: Counter = field(default_factory=Counter)
    rejected: dict[str, Counter] = field(default_factory=dict)
    unchanged: Counter = field(default_factory=Counter)

    def add(self, task: str, reason: str | None, unchanged: bool = False) -> None:
        if reason is None:
            self.kept[task] += 1
            self.unchanged[task] += int(unchanged)
        else:
            self.rejected.setdefault(task, Counter())[reason] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        tasks = sorted(set(self.kept) | set(self.rejected))
        return {
            t: {"total": self.kept[t] + sum(self.rejected.get(t, {}).values()), "kept": self.kept[t],
                **{r: self.rejected.get(t, Counter())[r] for r in REASONS}, "unchanged": self.unchanged[t]}
            for t in tasks
        }


def check_rewrite(ex: Example, output: str, cfg: FilterConfig) -> tuple[str | None, str]:
    """(rejection reason or None, cleaned rewrite)."""
    t = clean_output(output)
    if not t:
        return "empty", t
    if "\n" in t or cfg.separator.strip() in t:
        return "malformed", t
    n = normalize(t)
    if any(n == normalize(h) for h in ex.history if h.strip()):
        return "echoed", t
    words = len(t.split())
    if words > cfg.max_words or words > cfg.max_ratio * max(len(ex.question.split()), 3):
        return "too_long", t
    return None, t


def check_expansion(ex: Example, output: str, cfg: FilterConfig) -> tuple[str | None, list[str]]:
    """(rejection reason or None, the reformulations)."""
    if not clean_output(output):
        return "empty", []
    parts = parse_expansions(output.replace("\n", cfg.separator), cfg.separator)
    if not cfg.min_parts <= len(parts) <= cfg.max_parts or any(not p for p in parts):
        return "malformed", parts
    q = normalize(ex.question)
    if any(normalize(p) == q for p in parts):
        return "echoed", parts
    if any(len(p.split()) > cfg.max_words or len(p.split()) > cfg.max_ratio * max(len(ex.question.split()), 3) for p in parts):
        return "too_long", parts
    return None, parts


def filter_outputs(examples: list[Example], outputs: list[str | None], cfg: FilterConfig) -> tuple[list[tuple[Example, str]], FilterReport]:
    """Keep the (example, target) pairs that pass every check; expansions are re-joined with the
    canonical separator so every target has one format. ``None`` outputs (another shard's) are skipped."""
    kept: list[tuple[Example, str]] = []
    report = FilterReport()
    for ex, out in zip(examples, outputs, strict=True):
        if out is None:
            continue
        if ex.task == "rewrite":
            reason, target = check_rewrite(ex, out, cfg)
            report.add(ex.task, reason, unchanged=reason is None and normalize(target) == normalize(ex.question))
        else:
            reason, parts = check_expansion(ex, out, cfg)
            target = cfg.separator.join(parts)
            report.add(ex.task, reason)
        if reason is None:
            kept.append((ex, target))
    return kept, report
